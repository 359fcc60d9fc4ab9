"""``<project>/raw``: one landing file parsed and validated; data version = content hash."""

from collections.abc import Iterator
from pathlib import Path

import dagster as dg

from mlplatform.defs.checks import audited_output, check_specs
from mlplatform.defs.partitions import data_partitions
from mlplatform.defs.versions import code_version
from mlplatform.free_memory import freeze_what_is_alive, large_blocks_from_the_os
from mlplatform.landing import shown
from mlplatform.resources.store import ArtifactStore, FrameHandover
from mlplatform.spec import ProjectSpec

RAW_CHECKS = {
    "schema": "Columns parse as their declared types; non-nullable columns are filled; "
    "no column has more missing values than its max_missing_fraction.",
    "ranges": "Numbers within [min, max]; categories among the allowed values and within "
    "max_categories distinct values.",
    "row_count": "At least quality.min_rows rows and no duplicated rows.",
    "target": "The target is present and valid in every row.",
}


def raw_asset(spec: ProjectSpec) -> dg.AssetsDefinition:
    key = dg.AssetKey([spec.name, "raw"])

    @dg.asset(
        key=key,
        partitions_def=data_partitions(spec),
        io_manager_key="parquet_io",
        check_specs=check_specs(key, RAW_CHECKS, data_partitions(spec)),
        code_version=code_version(
            spec,
            [
                "mlplatform.steps.ingest",
                "mlplatform.columnar.csv_stream",
                "mlplatform.steps.partition_quality",
                "mlplatform.columnar.kernels",
                "mlplatform.columns",
            ],
            ["data", "columns", "quality", "target"],
        ),
        group_name=spec.name,
        kinds={"pandas", "parquet"},
        description=f"Landing files of {spec.name}, parsed and validated against the spec.",
    )
    def raw(context: dg.AssetExecutionContext, store: ArtifactStore) -> Iterator[object]:
        from mlplatform.steps import ingest  # pandas, numpy: imported by the run

        large_blocks_from_the_os()
        freeze_what_is_alive()
        path = spec.landing_file(Path(store.home), context.partition_key)
        # refuses what is not a landing file; streams a CSV file chunk by chunk
        typed, report, sha = ingest.ingest_landing(path, spec)
        per_column = {
            name: {"missing": q.missing, "invalid": q.invalid, "out_of_range": q.out_of_range}
            for name, q in report.columns.items()
            if q.missing or q.invalid or q.out_of_range
        }
        typed.attrs = {"source_file": str(path), "sha256": sha}
        output = dg.Output(
            FrameHandover(typed, pass_on=True),  # stored; passed to features, not kept
            data_version=dg.DataVersion(sha),
            metadata={
                "rows": report.rows,
                "file": dg.MetadataValue.path(str(path)),
                "sha256": sha,
                "invalid_values": sum(q.invalid for q in report.columns.values()),
                "missing_values": sum(q.missing for q in report.columns.values()),
            },
        )
        yield from audited_output(
            shown(path),
            output,
            report.problems,
            {"schema": {"columns": per_column}, "row_count": {"rows": report.rows}},
        )

    return raw
