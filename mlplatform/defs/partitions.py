"""Partitions of a project: data partitions (one per landing file) and training cutoffs."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from pathlib import Path

import dagster as dg

from mlplatform.spec import WEEKDAYS, ProjectSpec

_KINDS = {
    "daily": dg.DailyPartitionsDefinition,
    "weekly": dg.WeeklyPartitionsDefinition,
    "monthly": dg.MonthlyPartitionsDefinition,
}
KEY_FORMAT = "%Y-%m-%d"


def periods_after(granularity: str, start: dt.date, n: int) -> dt.date:
    """The period start ``n`` periods after ``start`` (itself a period start)."""
    if granularity == "daily":
        return start + dt.timedelta(days=n)
    if granularity == "weekly":
        return start + dt.timedelta(weeks=n)
    years, month = divmod(start.month - 1 + n, 12)
    return start.replace(year=start.year + years, month=month + 1)


def _definition(spec: ProjectSpec, start: dt.date) -> dg.TimeWindowPartitionsDefinition:
    cls = _KINDS[spec.partitions.granularity]
    end = spec.partitions.end
    kwargs: dict[str, object] = {"start_date": start.strftime(KEY_FORMAT), "fmt": KEY_FORMAT}
    if end is not None:
        kwargs["end_date"] = end.strftime(KEY_FORMAT)
    if spec.partitions.granularity == "monthly":
        kwargs["day_offset"] = 1
    if spec.partitions.granularity == "weekly":  # Dagster counts weekdays from Sunday = 0
        kwargs["day_offset"] = (WEEKDAYS.index(spec.partitions.week_starts_on) + 1) % 7
    return cls(**kwargs)


def data_partitions(spec: ProjectSpec) -> dg.TimeWindowPartitionsDefinition:
    """One partition per landing file, keyed YYYY-MM-DD: the period's first day (weekly:
    ``partitions.week_starts_on``, default Sunday; monthly: the 1st)."""
    return _definition(spec, spec.partitions.start)


def cutoff_partitions(spec: ProjectSpec) -> dg.TimeWindowPartitionsDefinition:
    """Training cutoffs: the first one has a full window of ``training.window`` partitions."""
    p = spec.partitions
    return _definition(spec, periods_after(p.granularity, p.start, spec.training.window))


def window_and_holdout(spec: ProjectSpec) -> dg.TimeWindowPartitionMapping:
    """Cutoff -> the ``window`` data partitions before it plus the cutoff partition itself.

    A model trains on the window only; depending on the holdout too means it is trained
    (by automation) only once its evaluation can run."""
    return dg.TimeWindowPartitionMapping(start_offset=-spec.training.window, end_offset=0)


def previous_window(spec: ProjectSpec, key: str) -> list[str]:
    """The ``window`` data partition keys before ``key`` that exist in the definition."""
    keys = data_partitions(spec).get_partition_keys()
    if key not in keys:
        return []
    i = keys.index(key)
    return list(keys[max(0, i - spec.training.window) : i])


def landed_partitions(spec: ProjectSpec, home: Path) -> tuple[list[str], list[Path]]:
    """Partition keys that have a landing file, and landing files that match no partition."""
    keys = data_partitions(spec).get_partition_keys()
    landing = spec.landing_dir(home)
    by_name = {spec.data.filename.format(partition=k): k for k in keys}
    # not only regular files: a pipe or a link named like a partition is refused by name later
    files = sorted(p for p in landing.glob("*") if not p.name.startswith(".") and not p.is_dir())
    found = [by_name[p.name] for p in files if p.name in by_name]
    stray = [p for p in files if p.name not in by_name]
    return sorted(found), stray


def trainable_cutoffs(spec: ProjectSpec, landed: Iterable[str]) -> list[str]:
    """Cutoffs whose holdout partition has landed (the window is checked when training)."""
    landed = set(landed)
    return [k for k in cutoff_partitions(spec).get_partition_keys() if k in landed]
