"""Retrain schedule: on the spec's cron, rebuild the stale assets of the newest cutoff.

A candidate whose inputs, code and params are unchanged is not retrained: the run selects only
what Dagster's staleness (code and data versions) says is stale or missing."""

from collections.abc import Callable

import dagster as dg

from mlplatform.defs.partitions import cutoff_partitions
from mlplatform.defs.status import stale_resolver
from mlplatform.spec import ProjectSpec


def stale_and_downstream(
    targets: list[dg.AssetKey], is_stale: Callable[[dg.AssetKey], bool]
) -> list[str]:
    """The stale (or missing) targets and, once a model is among them, evaluation and bundle
    after it (``targets`` in graph order: models, evaluation, bundle)."""
    models = [k for k in targets if len(k.path) > 1 and k.path[1] == "model"]
    chosen = [k for k in models if is_stale(k)]
    rest = [k for k in targets if k not in models]
    for key in rest:
        if chosen or is_stale(key):
            chosen.append(key)
    return [k.to_user_string() for k in chosen]


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
        description="Rebuilds the stale models, evaluation and bundle of the newest cutoff whose "
        "holdout has landed; skipped when they are up to date (no new data, no new code).",
    )
    def retrain(context: dg.ScheduleEvaluationContext) -> dg.RunRequest | dg.SkipReason:
        landed = context.instance.get_materialized_partitions(features)
        cutoffs = [k for k in cutoff_partitions(spec).get_partition_keys() if k in landed]
        if not cutoffs:
            return dg.SkipReason(f"{p}: no cutoff has its holdout partition yet")
        cutoff = cutoffs[-1]
        resolver = stale_resolver(context.repository_def, context.instance)
        stale = stale_and_downstream(
            targets, lambda k: resolver.get_status(k, cutoff).value != "FRESH"
        )
        if not stale:
            return dg.SkipReason(f"{p} {cutoff}: everything is up to date")
        return dg.RunRequest(
            partition_key=cutoff,
            asset_selection=[dg.AssetKey.from_user_string(k) for k in stale],
            tags={"mlplatform/trigger": "schedule", "mlplatform/stale": ",".join(stale)},
        )

    return retrain
