"""Dagster's automation and a project's landing sensor evaluated in-process, tick by tick, with
the runs they request executed at once (as the daemon would launch them); and marks in the
event log to tell what a tick materialized."""

from collections.abc import Callable
from dataclasses import dataclass

import dagster as dg

from mlplatform.defs.dagster_internals import AssetDaemonCursor
from mlplatform.defs.runs import QUIET
from mlplatform.spec import ProjectSpec


@dataclass(frozen=True)
class AutomationRun:
    partition: str
    assets: tuple[str, ...]
    success: bool


Materializable = dg.AssetsDefinition | dg.AssetSpec | dg.SourceAsset


def materializable(defs: dg.Definitions) -> list[Materializable]:
    """The assets and asset checks of ``defs``, as ``dg.materialize`` takes them."""
    found = [*(defs.assets or []), *(defs.asset_checks or [])]
    return [a for a in found if isinstance(a, Materializable)]


def run_automation(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    cursor: AssetDaemonCursor | None = None,
    max_ticks: int = 20,
    on_run: Callable[[AutomationRun], None] | None = None,
) -> tuple[list[AutomationRun], AssetDaemonCursor]:
    """Evaluate declarative automation tick by tick, executing what each tick requests
    in-process (one run per partition key and partitions definition), until a tick requests
    nothing. The conditions are the ones the daemon evaluates; this makes them deterministic.
    Pass the returned cursor to the next call, as the daemon does between ticks: a first
    evaluation only records where things stand."""
    graph = defs.resolve_asset_graph()
    everything = materializable(defs)
    executed: list[AutomationRun] = []
    for _ in range(max_ticks):
        result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=cursor)
        cursor = result.cursor
        groups: dict[tuple[str, str], list[dg.AssetKey]] = {}
        for key in graph.materializable_asset_keys:
            for partition in result.get_requested_partitions(key):
                part_def = graph.get(key).partitions_def
                group = (str(part_def), partition or "")
                groups.setdefault(group, []).append(key)
        if not groups:
            return executed, cursor
        for (_, partition), keys in sorted(groups.items(), key=lambda g: g[0][1]):
            outcome = dg.materialize(
                everything,
                selection=keys,
                partition_key=partition or None,
                instance=instance,
                resources=dict(defs.resources or {}),
                tags={"mlplatform/trigger": "automation"},
                raise_on_error=False,
                run_config=QUIET,
            )
            run = AutomationRun(
                partition, tuple(sorted(k.to_user_string() for k in keys)), outcome.success
            )
            executed.append(run)
            if on_run:
                on_run(run)
    raise RuntimeError(f"automation still requesting runs after {max_ticks} ticks")


def tick_landing_sensor(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    spec: ProjectSpec,
    cursor: str | None = None,
) -> tuple[list[dg.RunRequest], list[bool], str | None]:
    """One tick of a project's landing sensor, its runs executed in-process (as the daemon
    would launch them): the requests, whether each run succeeded, and the new cursor."""
    sensor = defs.get_sensor_def(f"{spec.name}__landing")
    # entered and left here: a context left to the garbage collector later restores Dagster's
    # instance context var to whatever it held before, possibly a dead instance
    with dg.build_sensor_context(
        instance=instance, cursor=cursor, definitions=defs, resources=defs.resources
    ) as context:
        result = sensor(context)
    assert isinstance(result, dg.SensorResult)
    everything = materializable(defs)
    outcomes = []
    for request in result.run_requests or []:
        outcome = dg.materialize(
            everything,
            selection=[dg.AssetKey([spec.name, "raw"]), dg.AssetKey([spec.name, "features"])],
            partition_key=request.partition_key,
            instance=instance,
            resources=dict(defs.resources or {}),
            tags=request.tags,
            raise_on_error=False,
            run_config=QUIET,
        )
        outcomes.append(outcome.success)
    return list(result.run_requests or []), outcomes, result.cursor


def latest_storage_id(instance: dg.DagsterInstance) -> int:
    """Storage id of the newest materialization event (0 if none): a mark to diff against."""
    records = instance.get_event_records(
        dg.EventRecordsFilter(event_type=dg.DagsterEventType.ASSET_MATERIALIZATION), limit=1
    )
    return records[0].storage_id if records else 0


def materialized_since(instance: dg.DagsterInstance, storage_id: int) -> set[tuple[str, str]]:
    """(asset, partition) of every materialization recorded after ``storage_id``."""
    records = instance.get_event_records(
        dg.EventRecordsFilter(
            event_type=dg.DagsterEventType.ASSET_MATERIALIZATION, after_cursor=storage_id
        )
    )
    return {
        (
            r.asset_materialization.asset_key.to_user_string(),
            r.asset_materialization.partition or "",
        )
        for r in records
        if r.asset_materialization is not None
    }
