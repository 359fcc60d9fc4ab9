"""Retrain schedule: on the spec's cron, retrain the newest cutoff if anything it uses changed."""

import dagster as dg

from mlplatform.defs.partitions import cutoff_partitions
from mlplatform.defs.status import stale_resolver
from mlplatform.spec import ProjectSpec


def retrain_schedule(spec: ProjectSpec, targets: list[dg.AssetKey]) -> dg.ScheduleDefinition | None:
    """None when the spec has no schedule."""
    if spec.schedule is None:
        return None
    p = spec.name
    features = dg.AssetKey([p, "features"])

    @dg.schedule(
        name=f"{p}__retrain",
        cron_schedule=spec.schedule.cron,
        execution_timezone=spec.schedule.timezone,
        target=dg.AssetSelection.assets(*targets),
        default_status=(
            dg.DefaultScheduleStatus.RUNNING
            if spec.automation.enabled
            else dg.DefaultScheduleStatus.STOPPED
        ),
        description="Retrains the newest cutoff whose holdout has landed; skipped when its "
        "models, evaluation and bundle are up to date (no new data, no new code).",
    )
    def retrain(context: dg.ScheduleEvaluationContext) -> dg.RunRequest | dg.SkipReason:
        landed = context.instance.get_materialized_partitions(features)
        cutoffs = [k for k in cutoff_partitions(spec).get_partition_keys() if k in landed]
        if not cutoffs:
            return dg.SkipReason(f"{p}: no cutoff has its holdout partition yet")
        cutoff = cutoffs[-1]
        resolver = stale_resolver(context.repository_def, context.instance)
        stale = [
            k.to_user_string() for k in targets if resolver.get_status(k, cutoff).value != "FRESH"
        ]
        if not stale:
            return dg.SkipReason(f"{p} {cutoff}: everything is up to date")
        return dg.RunRequest(
            partition_key=cutoff,
            tags={"mlplatform/trigger": "schedule", "mlplatform/stale": ",".join(stale)},
        )

    return retrain
