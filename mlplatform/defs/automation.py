"""Declarative automation that follows data versions, not events.

- ``features`` of a partition recomputes when the data version of its ``raw`` changed (a file
  re-ingested with the same bytes changes nothing).
- The training assets (models, evaluation, bundle) of a cutoff recompute when an input's data
  version changed, but only for the *newest* cutoff whose holdout landed and for cutoffs that
  were built before; the newest cutoff is also built when it first appears. Training every
  historical cutoff (a backtest) is an explicit action: ``materialize --all-cutoffs`` or a
  backfill from the UI.
- Nothing is evaluated as "changed" on the first tick: starting the daemon on a home built by
  the CLI requests nothing.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from mlplatform.defs.partitions import landed_partitions, trainable_cutoffs
from mlplatform.spec import ProjectSpec

AC = dg.AutomationCondition


class NewestLandedCutoff(dg.AutomationCondition):
    """True for the newest training cutoff whose holdout partition has a landing file (the
    cutoff ``mlplatform materialize`` trains by default)."""

    def __init__(self, spec: ProjectSpec, home: Path) -> None:
        self._spec = spec
        self._home = home

    @property
    def name(self) -> str:
        return "newest_landed_cutoff"

    @property
    def description(self) -> str:
        return "Newest cutoff whose holdout file landed"

    def evaluate(self, context: dg.AutomationContext) -> dg.AutomationResult:
        landed, _ = landed_partitions(self._spec, self._home)
        cutoffs = trainable_cutoffs(self._spec, landed)
        subset = context.get_empty_subset()
        if cutoffs:
            subset = context.candidate_subset.compute_intersection_with_partition_keys(
                {cutoffs[-1]}
            )
        return dg.AutomationResult(context, subset)


def inputs_changed() -> dg.AutomationCondition:
    """A dependency's data version changed since the previous tick (not in a run that also
    built the target), or a dependency is requested on this tick."""
    return AC.any_deps_match(
        (AC.data_version_changed() & ~AC.executed_with_root_target()).with_label(
            "data_version_changed_without_root"
        )
        | AC.will_be_requested()
    ).with_label("any_deps_changed")


def ready() -> dg.AutomationCondition:
    """Every dependency exists, none is running or being backfilled, every upstream blocking
    check passed, and the target itself is not running."""
    return (
        ~AC.any_deps_missing()
        & ~AC.any_deps_in_progress()
        & ~AC.any_deps_match(AC.backfill_in_progress())
        & ~AC.in_progress()
        & AC.all_deps_blocking_checks_passed()
    ).with_label("ready")


def follow_inputs() -> dg.AutomationCondition:
    """Data partitions: recompute exactly the partitions whose inputs changed."""
    return (inputs_changed().since_last_handled() & ready()).with_label("follow inputs")


def train_what_matters(spec: ProjectSpec, home: Path) -> dg.AutomationCondition:
    """Cutoff partitions: the newest landed cutoff when it first appears or its inputs change;
    an earlier cutoff only when it was built before and an input it read changed."""
    newest = NewestLandedCutoff(spec, home)
    trigger = (inputs_changed() & (newest | ~AC.missing())) | (newest & AC.missing()).newly_true()
    handled = trigger.since_last_handled()  # type: ignore[misc]  # dagster's self-type
    return (handled & ready()).with_label("train what matters")


def data_condition(spec: ProjectSpec) -> dg.AutomationCondition | None:
    """The automation condition of ``features`` (None when automation is off)."""
    return follow_inputs() if spec.automation.enabled else None


def condition_for(spec: ProjectSpec, home: Path) -> dg.AutomationCondition | None:
    """The automation condition of the training assets (None when automation is off)."""
    return train_what_matters(spec, home) if spec.automation.enabled else None


def automation_sensor(spec: ProjectSpec) -> dg.AutomationConditionSensorDefinition:
    """Evaluates the project's automation conditions; stopped when automation is off. It runs
    in the code server because the newest-cutoff condition reads the landing folder."""
    return dg.AutomationConditionSensorDefinition(
        name=f"{spec.name}__automation",
        target=dg.AssetSelection.groups(spec.name),
        minimum_interval_seconds=spec.automation.sensor_interval_seconds,
        use_user_code_server=True,
        default_status=(
            dg.DefaultSensorStatus.RUNNING
            if spec.automation.enabled
            else dg.DefaultSensorStatus.STOPPED
        ),
        description=f"Declarative automation of {spec.name}: data versions, not events; the "
        "newest cutoff and cutoffs built before retrain when their inputs change.",
    )
