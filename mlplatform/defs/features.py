"""``<project>/features``: cleaned, typed model features per partition."""

from collections.abc import Iterator

import dagster as dg
import pandas as pd

import mlplatform.columns
from mlplatform.defs.checks import check_results, check_specs, fail_if_any
from mlplatform.defs.partitions import data_partitions
from mlplatform.defs.versions import code_version
from mlplatform.spec import ProjectSpec
from mlplatform.steps import features as steps

FEATURE_CHECKS = {
    "no_leakage": "No target, id or excluded column and no near-perfect predictor of the target.",
    "no_empty_feature": "Every feature has at least one value in the partition.",
}


def features_asset(spec: ProjectSpec) -> dg.AssetsDefinition:
    key = dg.AssetKey([spec.name, "features"])

    @dg.asset(
        key=key,
        partitions_def=data_partitions(spec),
        ins={"raw": dg.AssetIn(key=[spec.name, "raw"])},
        io_manager_key="parquet_io",
        check_specs=check_specs(key, FEATURE_CHECKS),
        code_version=code_version(
            spec, [steps, mlplatform.columns], ["columns", "features", "target", "task"]
        ),
        group_name=spec.name,
        kinds={"pandas", "parquet"},
        description="Cleaned and derived features plus the target, one partition per file.",
    )
    def features(context: dg.AssetExecutionContext, raw: pd.DataFrame) -> Iterator[object]:
        frame = steps.build_features(raw, spec)
        problems = {
            "no_leakage": steps.leakage_findings(frame, spec),
            "no_empty_feature": [
                f"feature {name!r} has no value in this partition"
                for name in steps.empty_features(frame, spec)
            ],
        }
        yield from check_results(problems)
        fail_if_any(f"{spec.name}/features {context.partition_key}", problems)
        frame.attrs = {"raw_sha256": raw.attrs.get("sha256")}
        yield dg.Output(frame, metadata={"rows": len(frame), "columns": len(frame.columns)})

    return features
