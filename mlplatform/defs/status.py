"""What is materialized, stale (and why), missing or blocked by a failed check, per partition."""

from collections.abc import Iterable
from dataclasses import asdict, dataclass

import dagster as dg
from dagster._core.definitions.data_version import (  # the resolver behind the UI's "stale" badge
    CachingStaleStatusResolver,
    StaleCause,
    StaleCauseCategory,
    StaleStatus,
)
from dagster._core.event_api import PartitionKeyFilter
from dagster._core.loader import DataLoader, LoadingContext

from mlplatform.defs.partitions import cutoff_partitions, data_partitions
from mlplatform.spec import ProjectSpec

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
    defs: dg.Definitions, instance: dg.DagsterInstance
) -> CachingStaleStatusResolver:
    return CachingStaleStatusResolver(instance, defs.resolve_asset_graph(), _Loading(instance))


def _failed_checks(
    instance: dg.DagsterInstance, key: dg.AssetKey, check_names: Iterable[str], partition: str
) -> list[str]:
    failed = []
    for name in check_names:
        records = instance.event_log_storage.get_asset_check_execution_history(
            dg.AssetCheckKey(key, name), limit=1, partition_filter=PartitionKeyFilter(key=partition)
        )
        if records and records[0].evaluation is not None and not records[0].evaluation.passed:
            failed.append(name)
    return failed


def project_status(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    spec: ProjectSpec,
    partitions: list[str] | None = None,
) -> list[PartitionStatus]:
    """One row per (asset, partition) of the project, newest partitions included."""
    resolver = stale_resolver(defs, instance)
    graph = defs.resolve_asset_graph()
    data_keys = set(data_partitions(spec).get_partition_keys())
    cutoff_keys = set(cutoff_partitions(spec).get_partition_keys())
    rows = []
    for key in sorted(
        (k for k in graph.get_all_asset_keys() if k.path[0] == spec.name),
        key=lambda k: _order(k),
    ):
        node = graph.get(key)
        valid = data_keys if key.path[1] in ("raw", "features") else cutoff_keys
        keys = sorted(valid if partitions is None else valid & set(partitions))
        checks = [c.name for c in node.check_keys]
        for pk in keys:
            status = resolver.get_status(key, pk)
            failed = _failed_checks(instance, key, checks, pk)
            if failed:
                rows.append(
                    PartitionStatus(key.to_user_string(), pk, "failed_check", ", ".join(failed))
                )
            elif status == StaleStatus.MISSING:
                rows.append(PartitionStatus(key.to_user_string(), pk, "missing"))
            elif status == StaleStatus.STALE:
                causes = resolver.get_stale_root_causes(key, pk)
                reason = "; ".join(sorted({_cause(c) for c in causes})) or "upstream changed"
                rows.append(PartitionStatus(key.to_user_string(), pk, "stale", reason))
            else:
                rows.append(PartitionStatus(key.to_user_string(), pk, "materialized"))
    return rows


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
