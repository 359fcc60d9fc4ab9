"""What is materialized, stale (and why), missing or blocked by a failed check, per partition."""

import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import dagster as dg
from dagster_shared.error import SerializableErrorInfo

from mlplatform.defs.dagster_internals import (  # the resolver behind the UI's "stale" badge
    AssetCheckExecutionRecordStatus,
    CachingStaleStatusResolver,
    PartitionKeyFilter,
    StaleCause,
    StaleCauseCategory,
    StaleStatus,
    loading_context,
)
from mlplatform.defs.partitions import cutoff_partitions, data_partitions, previous_window
from mlplatform.digests import stream_sha256
from mlplatform.landing import LandingRefusedError, open_landing_file
from mlplatform.spec import ProjectSpec

CAUSES = {
    StaleCauseCategory.CODE: "new code",
    StaleCauseCategory.DATA: "upstream changed",
    StaleCauseCategory.DEPENDENCIES: "dependencies changed",
}
# how a dg.Failure's message begins, its class named by where Dagster defines it
FAILURE_PREFIX = f"{dg.Failure.__module__}.{dg.Failure.__qualname__}: "
# a run stopped by a signal says nothing about the data
INTERRUPTED = {"DagsterExecutionInterruptedError", "StopRequestedError", "KeyboardInterrupt"}


@dataclass(frozen=True)
class PartitionStatus:
    asset: str
    partition: str
    state: str  # materialized | stale | missing | failed_check | warning
    reason: str = ""
    stale: bool = False  # also true for a failed_check whose inputs or code changed since

    def to_json(self) -> dict[str, str]:
        return {k: v for k, v in asdict(self).items() if k != "stale"}


@dataclass(frozen=True)
class CheckFailure:
    """The latest completed execution of one check on one asset partition, failed."""

    asset: str
    partition: str
    check: str
    blocking: bool
    reason: str

    def __str__(self) -> str:
        return f"{self.check}: {self.reason}" if self.reason else self.check


def stale_resolver(
    defs: dg.Definitions | dg.RepositoryDefinition, instance: dg.DagsterInstance
) -> CachingStaleStatusResolver:
    """Dagster's own staleness logic (code versions, data versions) for these definitions."""
    graph = defs.resolve_asset_graph() if isinstance(defs, dg.Definitions) else defs.asset_graph
    return CachingStaleStatusResolver(instance, graph, loading_context(instance))


def error_text(error: SerializableErrorInfo | None, fallback: str = "") -> str:
    """The message a user needs from a step failure: the cause's, else the error's own."""
    if error is None:
        return fallback.strip()
    if error.cause is not None:
        error = error.cause
    message = error.message.strip()
    if error.cls_name == "Failure":  # dg.Failure: the description is the message
        message = message.removeprefix(FAILURE_PREFIX)
    return message


def _step_failure(
    instance: dg.DagsterInstance, run_id: str, key: dg.AssetKey
) -> SerializableErrorInfo | None:
    """The error that failed ``key``'s step in a run, if that step itself failed."""
    step = key.to_python_identifier()
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_FAILURE):
        event = entry.dagster_event
        if event is not None and event.step_key == step:
            return event.event_specific_data.error  # type: ignore[union-attr]
    return None


def check_failures(
    instance: dg.DagsterInstance,
    key: dg.AssetKey,
    check_names: Iterable[str],
    partition: str | None,
) -> list[CheckFailure]:
    """Checks whose latest *completed* execution on this partition failed. A check planned
    in a run that was canceled, interrupted or is still going says nothing and is passed over;
    a check left unevaluated because the asset's own step raised (a landing file that cannot
    be parsed) is reported once, as check ``step`` with that error."""
    failed: list[CheckFailure] = []
    partition_filter = None if partition is None else PartitionKeyFilter(key=partition)
    step_errors: dict[str, SerializableErrorInfo | None] = {}
    step_failed = ""
    for name in check_names:
        records = instance.event_log_storage.get_asset_check_execution_history(
            dg.AssetCheckKey(key, name), limit=10, partition_filter=partition_filter
        )
        for record in records:
            if record.status == AssetCheckExecutionRecordStatus.SUCCEEDED:
                break
            evaluation = record.evaluation
            if record.status == AssetCheckExecutionRecordStatus.FAILED and evaluation:
                blocking = evaluation.blocking
                if blocking is None:
                    blocking = evaluation.severity == dg.AssetCheckSeverity.ERROR
                warn = evaluation.severity == dg.AssetCheckSeverity.WARN
                description = evaluation.description or ""
                failed.append(
                    CheckFailure(
                        key.to_user_string(),
                        partition or "",
                        name,
                        blocking and not warn,
                        description,
                    )
                )
                break
            run = instance.get_run_by_id(record.run_id)
            if run is None or run.status != dg.DagsterRunStatus.FAILURE:
                continue  # canceled or still going: look further back
            if record.run_id not in step_errors:
                step_errors[record.run_id] = _step_failure(instance, record.run_id, key)
            error = step_errors[record.run_id]
            if error is None or error.cls_name in INTERRUPTED:
                continue  # the asset never ran (upstream failed) or the run was interrupted
            step_failed = step_failed or error_text(error)
            break
    if step_failed:
        failed.insert(
            0, CheckFailure(key.to_user_string(), partition or "", "step", True, step_failed)
        )
    return failed


def upstream_of(spec: ProjectSpec, asset: dg.AssetKey, partition: str) -> list[tuple[str, str]]:
    """The (asset, partition) pairs one asset partition is computed from."""
    p, kind = spec.name, asset.path[1]
    if kind in ("features", "predictions"):
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
    cutoffs: list[str] | None = None,
) -> list[PartitionStatus]:
    """One row per (asset, partition) of the project, upstream first; ``production`` (one
    pointer, not partitioned) last. Stale means: the landing file changed since raw was built
    (new data), the asset's code version changed (new code), or something it was computed
    from changed or is itself stale. ``cutoffs`` narrows the cutoff-partitioned assets
    further than ``partitions``."""
    resolver = stale_resolver(defs, instance)
    graph = defs.resolve_asset_graph()
    data_keys = set(data_partitions(spec).get_partition_keys())
    cutoff_keys = set(cutoff_partitions(spec).get_partition_keys())
    if partitions is not None:
        data_keys &= set(partitions)
        cutoff_keys &= set(partitions)
    if cutoffs is not None:
        cutoff_keys &= set(cutoffs)
    states: dict[tuple[str, str], PartitionStatus] = {}
    for key in sorted(
        (k for k in graph.get_all_asset_keys() if k.path[0] == spec.name), key=_order
    ):
        if key.path[1] == "monitoring":  # per UTC day of the prediction log, not of the data
            continue
        node = graph.get(key)
        keys: Sequence[str | None]
        if node.partitions_def is None:
            keys = [None]
        else:
            by_data = node.partitions_def == data_partitions(spec)
            keys = sorted(data_keys if by_data else cutoff_keys)
        checks = [c.name for c in node.check_keys]
        name = key.to_user_string()
        for pk in keys:
            row = _row(resolver, instance, spec, key, pk, checks, home, states)
            states[(name, pk or "")] = row
    return list(states.values())


def _row(
    resolver: CachingStaleStatusResolver,
    instance: dg.DagsterInstance,
    spec: ProjectSpec,
    key: dg.AssetKey,
    pk: str | None,
    checks: list[str],
    home: Path | None,
    states: dict[tuple[str, str], PartitionStatus],
) -> PartitionStatus:
    name = key.to_user_string()
    status = resolver.get_status(key, pk)
    failures = check_failures(instance, key, checks, pk)
    blocking = [str(f) for f in failures if f.blocking]
    warnings = [str(f) for f in failures if not f.blocking]
    reasons = []
    if status == StaleStatus.STALE:
        reasons = sorted({_cause(c) for c in resolver.get_stale_root_causes(key, pk)})
    refused = ""
    if key.path[1] == "raw" and pk and home is not None:
        path = spec.landing_file(home, pk)
        try:
            if os.path.lexists(path):
                with open_landing_file(path, spec.data.max_file_mb) as fh:
                    sha = stream_sha256(fh) if status != StaleStatus.MISSING else ""
                current = resolver.get_current_data_version(key, pk).value
                if sha and sha != current:
                    reasons.append("new data: the landing file changed since raw was built")
        except LandingRefusedError as exc:
            refused = f"landing file refused (never read): {exc}"
    stale_up = [
        f"{a}[{k}]"
        for a, k in (upstream_of(spec, key, pk) if pk else [])
        if (a, k) in states and states[(a, k)].stale
    ]
    if stale_up and not reasons:
        reasons.append("upstream stale: " + ", ".join(stale_up[:3]))
    partition = pk or ""
    if blocking:
        also = [f"stale: {r}" for r in reasons] + [f"warning {w}" for w in warnings]
        reason = "; ".join(blocking + also)
        return PartitionStatus(name, partition, "failed_check", reason, stale=bool(reasons))
    if status == StaleStatus.MISSING:
        return PartitionStatus(name, partition, "missing", refused)
    if refused:  # what was built stays; the file now in the folder cannot replace it
        reasons.append(refused)
    if reasons:
        also = [f"warning {w}" for w in warnings]
        return PartitionStatus(name, partition, "stale", "; ".join(reasons + also), stale=True)
    if warnings:
        return PartitionStatus(name, partition, "warning", "; ".join(warnings))
    return PartitionStatus(name, partition, "materialized", _pointer(instance, key, pk))


def _pointer(instance: dg.DagsterInstance, key: dg.AssetKey, pk: str | None) -> str:
    """What an unpartitioned pointer asset (``production``) points at, from its metadata."""
    if pk is not None:
        return ""
    event = instance.get_latest_materialization_event(key)
    mat = event.asset_materialization if event else None
    bundle = mat.metadata.get("bundle_id") if mat else None
    return f"bundle {str(bundle.value)[:12]}" if bundle is not None else ""


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
    rank = {"raw": 0, "features": 1, "predictions": 1, "model": 2, "evaluation": 3, "bundle": 4}
    rank["production"] = 5
    return rank.get(key.path[1], 9), key.to_user_string()
