"""``<project>/predictions``: each landed partition scored by the bundle that was production
when it landed (the promotion ledger's history at the time of its ``raw`` materialization),
and on request (config ``current: true``) by the current production bundle too.

One row per landing-file row and bundle: ``row`` (0-based input row number), ``bundle_id``,
then ``label`` + ``proba_<class>`` or ``value`` (``mlplatform.scoring.batch``: the same code as
``mlplatform predict``). A partition that landed before any production is not scored (nothing
is stored) unless ``current: true``.
"""

import functools
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import dagster as dg

from mlplatform.defs.automation import inputs_changed, ready
from mlplatform.defs.partitions import data_partitions
from mlplatform.defs.versions import code_version
from mlplatform.resources.ledger import LedgerResource
from mlplatform.resources.store import ArtifactStore
from mlplatform.spec import ProjectSpec

if TYPE_CHECKING:  # SQLAlchemy and Alembic: imported when the ledger is first used
    import pandas as pd

    from mlplatform.ledger import Ledger
    from mlplatform.ledger.store import Promotion

SCORING: list[ModuleType | str] = [
    "mlplatform.scoring",
    "mlplatform.columnar",
    "mlplatform.columns",
    "mlplatform.bundles.format",
]


class ScoreConfig(dg.Config):
    """``current``: also score with the current production bundle (when it differs)."""

    current: bool = False


def landed_at(instance: dg.DagsterInstance, key: dg.AssetKey, partition: str) -> datetime | None:
    """When the partition's current landing file was ingested (its newest ``raw``
    materialization)."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, asset_partitions=[partition]), limit=1
    ).records
    return datetime.fromtimestamp(records[0].timestamp, UTC) if records else None


@functools.cache
def _ledger(url: str) -> "Ledger":
    from mlplatform.ledger import Ledger

    return Ledger(url)


class ProductionExists(dg.AutomationCondition):
    """True while the project has a production bundle (read from the ledger): before the
    first promotion there is nothing to score with, so no run is requested."""

    def __init__(self, project: str, ledger_url: str) -> None:
        self._project = project
        self._url = ledger_url

    @property
    def name(self) -> str:
        return "production_exists"

    @property
    def description(self) -> str:
        return "The project has a production bundle"

    def evaluate(self, context: dg.AutomationContext) -> dg.AutomationResult:
        from mlplatform.ledger import LedgerError

        try:
            found = _ledger(self._url).production(self._project) is not None
        except LedgerError:  # the ledger is down: score later, never stop the other automation
            found = False
        subset = context.candidate_subset if found else context.get_empty_subset()
        return dg.AutomationResult(context, subset)


def score_new_data(spec: ProjectSpec, ledger_url: str) -> dg.AutomationCondition | None:
    """``predictions`` of a partition: when its ``raw`` changed while a bundle is production."""
    if not spec.automation.enabled:
        return None
    condition = inputs_changed() & ProductionExists(spec.name, ledger_url)
    changed = condition.since_last_handled()  # type: ignore[misc]  # dagster's self-type
    return (changed & ready()).with_label("score new data")


def predictions_asset(spec: ProjectSpec) -> dg.AssetsDefinition:
    p = spec.name
    raw_key = dg.AssetKey([p, "raw"])

    @dg.asset(
        key=[p, "predictions"],
        partitions_def=data_partitions(spec),
        deps=[raw_key],
        io_manager_key="parquet_io",
        output_required=False,
        code_version=code_version(spec, SCORING, ["data"]),
        group_name=p,
        kinds={"onnx", "parquet"},
        description=f"Each landed partition of {p} scored by the bundle that was production "
        "when it landed (config current: true adds the current one).",
    )
    def predictions(
        context: dg.AssetExecutionContext,
        config: ScoreConfig,
        ledger: LedgerResource,
        store: ArtifactStore,
    ) -> Iterator[dg.Output]:
        from mlplatform.digests import file_sha256

        pk = context.partition_key
        when = landed_at(context.instance, raw_key, pk)
        at_landing, bundles = _scoring_bundles(ledger.ledger.history(p), when, config.current)
        if not bundles:
            context.log.info(
                f"{p}/predictions {pk}: no bundle was production when it landed "
                f"({when:%Y-%m-%d %H:%M:%S} UTC); not scored. Materialize it with config "
                "current: true to score it with the current production bundle"
                if when
                else f"{p}/predictions {pk}: raw was never materialized; not scored"
            )
            return
        path = spec.landing_file(Path(store.home), pk)
        dirs = [store.bundles_dir / b for b in bundles]
        frame, rows = _score_file(spec, path, dirs, context.log.warning)
        yield dg.Output(
            frame,
            metadata={
                "rows": rows,
                "bundle_at_landing": at_landing or "none",
                "bundles": ", ".join(b[:12] for b in bundles),
                "landed_at": when.isoformat(timespec="seconds") if when else "unknown",
                "file_sha256": file_sha256(path),
            },
        )

    return predictions


def _scoring_bundles(
    history: "list[Promotion]", when: datetime | None, with_current: bool
) -> tuple[str | None, list[str]]:
    """The bundle that was production at ``when``, and the bundles to score with."""
    from mlplatform.scoring.choice import production_at

    at_landing = production_at(history, when) if when is not None else None
    current = history[-1].to_bundle if history else None
    bundles = [b for b in (at_landing, current if with_current else None) if b]
    return at_landing, list(dict.fromkeys(bundles))


def _score_file(
    spec: ProjectSpec, path: Path, bundle_dirs: list[Path], warn: Callable[[str], None]
) -> "tuple[pd.DataFrame, int]":
    """The landing file scored by each bundle (rows told apart by ``bundle_id``)."""
    import pyarrow as pa

    from mlplatform.bundles.format import load
    from mlplatform.scoring.batch import score_table
    from mlplatform.scoring.reading import Source

    tables, rows = [], 0
    for bundle_dir in bundle_dirs:
        bundle = load(bundle_dir)
        with Source(
            path,
            bundle.schema.feature_columns,
            delimiter=spec.data.delimiter,
            encoding=spec.data.encoding,
            file_type=spec.data.format,
        ) as source:
            table, summary = score_table(bundle, source)
        rows = summary.rows
        tables.append(table)
        for line in summary.warnings(path, source.format == "csv"):
            warn(line)
    return pa.concat_tables(tables, promote_options="default").to_pandas(), rows
