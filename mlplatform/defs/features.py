"""``<project>/features``: cleaned, typed model features per partition."""

from collections.abc import Iterator

import dagster as dg

from mlplatform.defs.checks import audited_output, check_specs
from mlplatform.defs.frames import Frame
from mlplatform.defs.partitions import data_partitions, previous_window
from mlplatform.defs.versions import code_version
from mlplatform.free_memory import freeze_what_is_alive, large_blocks_from_the_os
from mlplatform.resources.store import ArtifactStore, FrameHandover
from mlplatform.spec import ProjectSpec

# The step modules (numpy, pandas) are imported by the runs that compute features or drift.
FEATURE_CHECKS = {
    "no_leakage": "No target, id or excluded column and no near-perfect predictor of the target.",
    "no_empty_feature": "Every feature has at least one value in the partition.",
}
PARTIAL_PERIOD = "partial_period"


def used_columns(spec: ProjectSpec) -> list[str]:
    """The raw columns the features step reads: the feature columns and the target."""
    used = {*spec.feature_columns, spec.target}
    return [name for name in spec.columns if name in used]


def feature_check_specs(spec: ProjectSpec, key: dg.AssetKey) -> list[dg.AssetCheckSpec]:
    """The blocking checks of ``features`` and the partial-period warning."""
    return [
        *check_specs(key, FEATURE_CHECKS, data_partitions(spec)),
        dg.AssetCheckSpec(
            PARTIAL_PERIOD,
            asset=key,
            blocking=False,
            partitions_def=data_partitions(spec),
            description="Warns when the partition has fewer rows than "
            f"quality.partial_period_share={spec.quality.partial_period_share} of the "
            f"median of the {spec.training.window} partitions before it.",
        ),
    ]


def features_asset(spec: ProjectSpec) -> dg.AssetsDefinition:
    key = dg.AssetKey([spec.name, "features"])

    @dg.asset(
        key=key,
        partitions_def=data_partitions(spec),
        # only what the features are made of: ids and excluded columns stay on disk
        ins={"raw": dg.AssetIn(key=[spec.name, "raw"], metadata={"columns": used_columns(spec)})},
        io_manager_key="parquet_io",
        check_specs=feature_check_specs(spec, key),
        code_version=code_version(
            spec,
            ["mlplatform.steps.features", "mlplatform.columns"],
            ["columns", "features", "target", "task"],
        ),
        group_name=spec.name,
        kinds={"pandas", "parquet"},
        description="Cleaned and derived features plus the target, one partition per file.",
    )
    def features(
        context: dg.AssetExecutionContext, raw: Frame, store: ArtifactStore
    ) -> Iterator[object]:
        from mlplatform.steps import features as steps

        large_blocks_from_the_os()
        freeze_what_is_alive()
        frame = steps.build_features(raw, spec)
        window = store.stored_rows(key, previous_window(spec, context.partition_key))
        partial = steps.partial_period(len(frame), window, spec.quality.partial_period_share)
        problems = {
            "no_leakage": steps.leakage_findings(frame, spec),
            "no_empty_feature": [
                f"feature {name!r} has no value in this partition"
                for name in steps.empty_features(frame, spec)
            ],
        }
        frame.attrs = {"raw_sha256": raw.attrs.get("sha256")}
        metadata = {"rows": len(frame), "columns": len(frame.columns)}
        yield from audited_output(
            f"{spec.name}/features {context.partition_key}",
            dg.Output(FrameHandover(frame, pass_on=True), metadata=metadata),  # to the drift check
            problems,
        )
        yield dg.AssetCheckResult(
            check_name=PARTIAL_PERIOD,
            passed=partial is None,
            severity=dg.AssetCheckSeverity.WARN,
            description=partial or "rows in line with the partitions before it",
            metadata={"rows": len(frame), "window_rows": dict(window)},
        )

    return features


def drift_check(spec: ProjectSpec) -> dg.AssetChecksDefinition:
    """Each partition against the ``training.window`` partitions before it: PSI per numeric
    feature, category-share change per categorical one, missing-share change per column; date
    parts that restate the partition key are not compared. Blocking when drift.severity=error,
    otherwise a failure is a warning."""
    key = dg.AssetKey([spec.name, "features"])
    blocking = spec.drift.severity == "error"

    @dg.asset_check(
        asset=key,
        name="drift",
        blocking=blocking,
        partitions_def=data_partitions(spec),
        description=f"Feature drift vs the previous {spec.training.window} partitions "
        f"(PSI > {spec.drift.psi_threshold}, share change > {spec.drift.share_threshold} or "
        f"missing-share change > {spec.drift.missing_threshold}).",
    )
    def drift(
        context: dg.AssetCheckExecutionContext, features: Frame, store: ArtifactStore
    ) -> dg.AssetCheckResult:
        from mlplatform.steps import drift as drift_steps
        from mlplatform.steps.window_files import WindowFiles

        window = previous_window(spec, context.partition_key)
        # the reference window is read one column at a time, never as frames
        reference = store.partition_files(key, window)
        severity = dg.AssetCheckSeverity.ERROR if blocking else dg.AssetCheckSeverity.WARN
        if not reference:
            return dg.AssetCheckResult(
                passed=True, description="no earlier partitions to compare with yet"
            )
        own = data_partitions(spec).time_window_for_partition_key(context.partition_key)
        period = (own.start.date(), own.end.date())
        skip = drift_steps.key_features(features, spec, period)
        before = WindowFiles(reference)
        found = drift_steps.feature_drift(before, features, spec, skip=skip)
        found += drift_steps.missing_changes(before, features, spec)
        drifted = [d for d in found if d.drifted]
        return dg.AssetCheckResult(
            passed=not drifted,
            severity=severity,
            description="; ".join(f"{d.feature}: {d.detail}" for d in drifted) or "no drift",
            metadata={
                "reference": f"{min(reference)} .. {max(reference)}",
                "drifted": len(drifted),
                "not_compared": ", ".join(skip) or "none",
                **{f"{d.kind}/{d.feature}": round(d.value, 4) for d in found},
            },
        )

    return drift
