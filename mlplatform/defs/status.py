"""What is materialized, stale (and why), missing or blocked by a failed check, per partition."""

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import dagster as dg
from dagster._core.definitions.data_version import (  # the resolver behind the UI's "stale" badge
    CachingStaleStatusResolver,
    StaleCause,
    StaleCauseCategory,
    StaleStatus,
)
from dagster._core.event_api import PartitionKeyFilter
from dagster._core.loader import DataLoader, LoadingContext
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus

from mlplatform.defs.partitions import cutoff_partitions, data_partitions, previous_window
from mlplatform.spec import ProjectSpec
from mlplatform.steps.ingest import file_sha256

CAUSES = {
    StaleCauseCategory.CODE: "new code",
    StaleCauseCategory.DATA: "upstream changed",
    StaleCauseCategory.DEPENDENCIES: "dependencies changed",
}


class _Loading(LoadingContext):
    def __init__(self, instance: dg.DagsterInstance):
        self._instance = instance
        self._loaders: dict[type, tuple[DataLoader, object]] = {}

    @property
    def instance(self) -> dg.DagsterInstance:
        return self._instance

    @property
    def loaders(self) -> dict:  # type: ignore[override]
        return self._loaders


@dataclass(frozen=True)
class PartitionStatus:
    asset: str
    partition: str
    state: str  # materialized | stale | missing | failed_check
    reason: str = ""

    def to_json(self) -> dict[str, str]:
        return asdict(self)


def stale_resolver(
    defs: dg.Definitions | dg.RepositoryDefinition, instance: dg.DagsterInstance
) -> CachingStaleStatusResolver:
    """Dagster's own staleness logic (code versions, data versions) for these definitions."""
    graph = defs.resolve_asset_graph() if isinstance(defs, dg.Definitions) else defs.asset_graph
    return CachingStaleStatusResolver(instance, graph, _Loading(instance))


def _failed_checks(
    instance: dg.DagsterInstance, key: dg.AssetKey, check_names: Iterable[str], partition: str
) -> list[str]:
    failed = []
    for name in check_names:
        records = instance.event_log_storage.get_asset_check_execution_history(
            dg.AssetCheckKey(key, name), limit=1, partition_filter=PartitionKeyFilter(key=partition)
        )
        if records and records[0].status == AssetCheckExecutionRecordStatus.FAILED:
            failed.append(name)
    return failed


def upstream_of(spec: ProjectSpec, asset: dg.AssetKey, partition: str) -> list[tuple[str, str]]:
    """The (asset, partition) pairs one asset partition is computed from."""
    p, kind = spec.name, asset.path[1]
    if kind == "features":
        return [(f"{p}/raw", partition)]
    if kind == "model":
        window = [*previous_window(spec, partition), partition]
        return [(f"{p}/features", k) for k in window]
    if kind in ("evaluation", "bundle"):
        first = (
            [f"{p}/model/{c.name}" for c in spec.candidates]
            if kind == "evaluation"
            else [f"{p}/evaluation"]
        )
        return [(a, partition) for a in first] + [(f"{p}/features", partition)]
    return []


def project_status(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    spec: ProjectSpec,
    partitions: list[str] | None = None,
    home: Path | None = None,
) -> list[PartitionStatus]:
    """One row per (asset, partition) of the project, upstream first. Stale means: the
    landing file changed since raw was built (new data), the asset's code version changed
    (new code), or something it was computed from changed or is itself stale."""
    resolver = stale_resolver(defs, instance)
    graph = defs.resolve_asset_graph()
    data_keys = set(data_partitions(spec).get_partition_keys())
    cutoff_keys = set(cutoff_partitions(spec).get_partition_keys())
    states: dict[tuple[str, str], PartitionStatus] = {}
    for key in sorted(
        (k for k in graph.get_all_asset_keys() if k.path[0] == spec.name), key=_order
    ):
        valid = data_keys if key.path[1] in ("raw", "features") else cutoff_keys
        keys = sorted(valid if partitions is None else valid & set(partitions))
        checks = [c.name for c in graph.get(key).check_keys]
        name = key.to_user_string()
        for pk in keys:
            status = resolver.get_status(key, pk)
            failed = _failed_checks(instance, key, checks, pk)
            reasons = []
            if status == StaleStatus.STALE:
                reasons = sorted({_cause(c) for c in resolver.get_stale_root_causes(key, pk)})
            if key.path[1] == "raw" and home is not None and status != StaleStatus.MISSING:
                path = spec.landing_file(home, pk)
                current = resolver.get_current_data_version(key, pk).value
                if path.is_file() and file_sha256(path) != current:
                    reasons.append("new data: the landing file changed since raw was built")
            stale_up = [
                f"{a}[{k}]"
                for a, k in upstream_of(spec, key, pk)
                if (a, k) in states and states[(a, k)].state == "stale"
            ]
            if stale_up and not reasons:
                reasons.append("upstream stale: " + ", ".join(stale_up[:3]))
            if failed:
                row = PartitionStatus(name, pk, "failed_check", ", ".join(failed))
            elif status == StaleStatus.MISSING:
                row = PartitionStatus(name, pk, "missing")
            elif reasons:
                row = PartitionStatus(name, pk, "stale", "; ".join(reasons))
            else:
                row = PartitionStatus(name, pk, "materialized")
            states[(name, pk)] = row
    return list(states.values())


def _cause(cause: StaleCause) -> str:
    """'new code: churn/features has a new code version', 'new data: churn/raw ...'."""
    label = CAUSES.get(cause.category, "upstream changed")
    if cause.category == StaleCauseCategory.DATA and cause.asset_key.path[-1] == "raw":
        label = "new data"
    where = cause.asset_key.to_user_string()
    if cause.partition_key:
        where += f"[{cause.partition_key}]"
    return f"{label}: {where} {cause.reason}"


def _order(key: dg.AssetKey) -> tuple[int, str]:
    rank = {"raw": 0, "features": 1, "model": 2, "evaluation": 3, "bundle": 4}
    return rank.get(key.path[1], 9), key.to_user_string()
