"""The queued run coordinator of a team deployment: Dagster's, plus the project run tag.

Per-project run limits (``tag_concurrency_limits`` on ``mlplatform/project`` with
``applyLimitPerUniqueValue``) only count runs that carry the tag. Sensors, schedules,
automation, backfills, the web UI and GraphQL all submit runs through the instance's run
coordinator, so tagging here covers every way a run can be launched, without each of them
having to remember it.
"""

from __future__ import annotations

from collections.abc import Iterable

import dagster as dg

from mlplatform.deploy import PROJECT_TAG

JOB_SUFFIXES = ("data", "train")


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


class ProjectQueuedRunCoordinator(dg.QueuedRunCoordinator):
    """``QueuedRunCoordinator`` that tags each run with its project before queueing it."""

    def submit_run(self, context: dg.SubmitRunContext) -> dg.DagsterRun:
        run = context.dagster_run
        if PROJECT_TAG not in run.tags:
            project = project_of_run(
                run.job_name,
                run.asset_selection or self._planned_asset_keys(run),
                run.asset_check_selection,
            )
            if project is not None:
                self._instance.add_run_tags(run.run_id, {PROJECT_TAG: project})
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
