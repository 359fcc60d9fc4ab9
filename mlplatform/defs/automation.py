"""Declarative automation: each asset follows its upstream, partition by partition."""

import dagster as dg

from mlplatform.spec import ProjectSpec

AC = dg.AutomationCondition


def follow_upstream() -> dg.AutomationCondition:
    """Materialize a partition when an upstream partition it reads was updated, once every
    upstream partition exists, nothing upstream is running and every upstream blocking check
    passed. Unlike ``eager()`` it applies to any time window, not only the latest, so a late
    or corrected file recomputes exactly its own downstream. While a backfill still holds
    upstream partitions it waits, so a model is not retrained once per upstream partition."""
    return (
        AC.any_deps_updated().since_last_handled()
        & ~AC.any_deps_missing()
        & ~AC.any_deps_in_progress()
        & ~AC.any_deps_match(AC.backfill_in_progress())
        & ~AC.in_progress()
        & AC.all_deps_blocking_checks_passed()
    ).with_label("follow upstream")


def condition_for(spec: ProjectSpec) -> dg.AutomationCondition | None:
    """The automation condition of a project's derived assets (None when turned off)."""
    return follow_upstream() if spec.automation.enabled else None


def automation_sensor(spec: ProjectSpec) -> dg.AutomationConditionSensorDefinition:
    """Evaluates the project's automation conditions; stopped when automation is off."""
    return dg.AutomationConditionSensorDefinition(
        name=f"{spec.name}__automation",
        target=dg.AssetSelection.groups(spec.name),
        minimum_interval_seconds=spec.automation.sensor_interval_seconds,
        default_status=(
            dg.DefaultSensorStatus.RUNNING
            if spec.automation.enabled
            else dg.DefaultSensorStatus.STOPPED
        ),
        description=f"Declarative automation of {spec.name}: each asset follows its upstream.",
    )
