"""Sensor ticks on a daemon's instance: waiting is counted in ticks, not seconds."""

from __future__ import annotations

import dagster as dg
from dagster._core.scheduler.instigation import InstigatorTick, InstigatorType, TickStatus
from dagster._core.storage.dagster_run import NOT_FINISHED_STATUSES


def finished_ticks(
    instance: dg.DagsterInstance, project: str, sensor: str, after: float
) -> list[InstigatorTick]:
    """Ticks of ``<project>__<sensor>`` started after ``after`` that have finished (a finished
    tick's runs are already in the run storage), oldest first."""
    for state in instance.all_instigator_state(instigator_type=InstigatorType.SENSOR):
        if state.instigator_name == f"{project}__{sensor}":
            ticks = instance.get_ticks(state.instigator_origin_id, state.selector_id, after=after)
            done = [t for t in ticks if t.status != TickStatus.STARTED]
            return sorted(done, key=lambda t: t.timestamp)
    return []


def completed_ticks(instance: dg.DagsterInstance, project: str, sensor: str, after: float) -> int:
    return len(finished_ticks(instance, project, sensor, after))


def settled(
    instance: dg.DagsterInstance,
    project: str,
    since: float,
    ticks: int = 2,
    sensors: tuple[str, ...] = ("landing", "automation"),
) -> bool:
    """No run queued or in progress, and each of ``sensors`` has finished ``ticks`` ticks that
    started after ``since`` and after the last run ended (so whatever the last run changed has
    been evaluated and requested nothing)."""
    if instance.get_runs_count(dg.RunsFilter(statuses=NOT_FINISHED_STATUSES)):
        return False
    ends = [r.end_time or 0.0 for r in instance.get_run_records(limit=10)]
    after = max([since, *ends])
    return all(completed_ticks(instance, project, s, after) >= ticks for s in sensors)
