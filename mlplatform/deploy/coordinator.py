"""The queued run coordinator of every mlplatform instance (embedded default and team stack).

Dagster's ``QueuedRunCoordinator`` with the platform's queue semantics, built from Dagster's own
features (run tags, tag concurrency limits, the ``dagster/priority`` tag):

- **Work runs** (ingest, training, evaluation, bundles, backfills) are limited to
  ``max_concurrent_runs`` at once; when the config leaves it out, the machine decides
  (:func:`machine_run_limit`: one per core, at most one per 1.5 GiB of memory), and
  ``MLPLATFORM_MAX_CONCURRENT_RUNS`` overrides it.
- Each project may hold at most ``max_runs_per_project`` of those (default
  :func:`default_runs_per_project`), so one project's backfill cannot starve another.
- **Promotion runs** (only ``<project>/production``) have a lane of their own and the highest
  priority: an approval is acted on while training runs fill the queue.

Sensors, schedules, automation, backfills, the web UI and GraphQL all submit runs through the
instance's run coordinator, so tagging here covers every way a run can be launched.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Self, cast

import dagster as dg

from mlplatform.deploy import PROJECT_TAG

JOB_SUFFIXES = ("data", "train")
LANE_TAG = "mlplatform/lane"
"""``work`` or ``promotion``: which limit a run counts against."""
WORK_PROJECT_TAG = "mlplatform/work_project"
"""The project of a work run (per-project limit; promotion runs do not count)."""
PRIORITY_TAG = "dagster/priority"
PROMOTION_PRIORITY = "100"
GIB = 1024**3
MEMORY_PER_RUN = 1.5 * GIB


def machine_run_limit(cpus: int | None = None, memory_bytes: int | None = None) -> int:
    """Work runs this machine holds at once: one per core, at most one per 1.5 GiB of memory
    (a training run worker peaks at 0.5–1 GB), at least one."""
    cpus = cpus or os.cpu_count() or 1
    if memory_bytes is None:
        memory_bytes = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return max(1, min(cpus, int(memory_bytes // MEMORY_PER_RUN)))


def default_runs_per_project(work_limit: int) -> int:
    """A project may use every slot of a small machine, half of a larger one's (at least 2)."""
    if work_limit < 0 or work_limit <= 2:
        return work_limit
    return max(2, math.ceil(work_limit / 2))


def project_of_run(
    job_name: str,
    asset_keys: Iterable[dg.AssetKey] | None,
    check_keys: Iterable[dg.AssetCheckKey] | None = None,
) -> str | None:
    """The one project whose assets (or checks) a run targets; None for none or several.

    Asset keys start with the project name; the project jobs are ``<project>__data`` and
    ``<project>__train``.
    """
    projects = {key.path[0] for key in asset_keys or () if key.path}
    projects |= {key.asset_key.path[0] for key in check_keys or () if key.asset_key.path}
    if not projects:
        head, _, suffix = job_name.rpartition("__")
        if head and not head.startswith("__") and suffix in JOB_SUFFIXES:
            projects = {head}
    return projects.pop() if len(projects) == 1 else None


def lane_of_run(asset_keys: Iterable[dg.AssetKey] | None) -> str:
    """``promotion`` for a run that only materializes ``<project>/production``, else ``work``."""
    keys = list(asset_keys or ())
    if keys and all(len(k.path) == 2 and k.path[1] == "production" for k in keys):
        return "promotion"
    return "work"


def queue_limits(
    work_limit: int, per_project: int, extra: Sequence[Mapping[str, Any]] = ()
) -> tuple[int, list[dict[str, Any]]]:
    """(max_concurrent_runs, tag_concurrency_limits) that give promotions a lane of their own."""
    limits: list[dict[str, Any]] = [{"key": LANE_TAG, "value": "promotion", "limit": 1}]
    if work_limit >= 0:
        limits.append({"key": LANE_TAG, "value": "work", "limit": work_limit})
    if per_project >= 0:
        limits.append(
            {
                "key": WORK_PROJECT_TAG,
                "value": {"applyLimitPerUniqueValue": True},
                "limit": per_project,
            }
        )
    total = -1 if work_limit < 0 else work_limit + 1
    return total, [*limits, *(dict(x) for x in extra)]


class ProjectQueuedRunCoordinator(dg.QueuedRunCoordinator):
    """``QueuedRunCoordinator`` with work/promotion lanes and per-project limits; it tags each
    run with its project, lane and (for promotions) priority before queueing it."""

    def __init__(
        self,
        max_concurrent_runs: int | None = None,
        max_runs_per_project: int | None = None,
        tag_concurrency_limits: Sequence[Mapping[str, Any]] | None = None,
        **kwargs: Any,
    ) -> None:
        work = max_concurrent_runs
        if work is None:
            override = os.environ.get("MLPLATFORM_MAX_CONCURRENT_RUNS", "").strip()
            work = int(override) if override else machine_run_limit()
        per_project = (
            default_runs_per_project(work) if max_runs_per_project is None else max_runs_per_project
        )
        self.work_limit, self.per_project_limit = work, per_project
        total, limits = queue_limits(work, per_project, tag_concurrency_limits or ())
        super().__init__(max_concurrent_runs=total, tag_concurrency_limits=limits, **kwargs)

    @classmethod
    def config_type(cls) -> dict[str, Any]:
        schema = dict(cast(Mapping[str, Any], super().config_type()))
        schema["max_concurrent_runs"] = dg.Field(
            dg.IntSource,
            is_required=False,
            description="Work runs in progress at once (default: what the machine holds; "
            "MLPLATFORM_MAX_CONCURRENT_RUNS overrides it). -1: no limit. Promotion runs have "
            "a lane of their own on top.",
        )
        schema["max_runs_per_project"] = dg.Field(
            dg.IntSource,
            is_required=False,
            description="Work runs of one project in progress at once (default: all slots of "
            "a machine with up to 2, half of a larger one's).",
        )
        return schema

    @classmethod
    def from_config_value(cls, inst_data: Any, config_value: Mapping[str, Any]) -> Self:
        return cls(inst_data=inst_data, **config_value)

    def submit_run(self, context: dg.SubmitRunContext) -> dg.DagsterRun:
        run = context.dagster_run
        keys = run.asset_selection or self._planned_asset_keys(run)
        tags: dict[str, str] = {}
        if PROJECT_TAG not in run.tags:
            project = project_of_run(run.job_name, keys, run.asset_check_selection)
            if project is not None:
                tags[PROJECT_TAG] = project
        project = run.tags.get(PROJECT_TAG) or tags.get(PROJECT_TAG)
        if LANE_TAG not in run.tags:
            lane = lane_of_run(keys)
            tags[LANE_TAG] = lane
            if lane == "promotion" and PRIORITY_TAG not in run.tags:
                tags[PRIORITY_TAG] = PROMOTION_PRIORITY
            if lane == "work" and project is not None:
                tags[WORK_PROJECT_TAG] = project
        if tags:
            self._instance.add_run_tags(run.run_id, tags)
            run = self._instance.get_run_by_id(run.run_id) or run
            context = dg.SubmitRunContext(run, context.workspace)
        return super().submit_run(context)

    def _planned_asset_keys(self, run: dg.DagsterRun) -> list[dg.AssetKey]:
        """Asset keys of the run's execution plan (a sensor's or schedule's asset selection
        becomes a job of its own, whose runs name no asset selection)."""
        if not run.execution_plan_snapshot_id:
            return []
        plan = self._instance.get_execution_plan_snapshot(run.execution_plan_snapshot_id)
        keys = []
        for step in plan.steps:
            for output in step.outputs:
                props = output.properties
                if props is not None and props.asset_key is not None:
                    keys.append(props.asset_key)
                elif props is not None and props.asset_check_key is not None:
                    keys.append(props.asset_check_key.asset_key)
        return keys
