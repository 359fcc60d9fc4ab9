"""What one partition of ``<project>/monitoring`` covers (``monitoring.period``): a UTC day
(``daily``, the default) or one data partition of the project (``partition``: its
``partitions.granularity``, keyed like the data), and when the schedule monitors it."""

import datetime as dt

import dagster as dg

from mlplatform.defs.partitions import KEY_FORMAT
from mlplatform.spec import WEEKDAYS, ProjectSpec, period_start, shift_periods


def granularity(spec: ProjectSpec) -> str:
    """The monitoring period's length: daily, weekly or monthly."""
    return spec.partitions.granularity if spec.monitoring.period == "partition" else "daily"


def _cron_weekday(spec: ProjectSpec) -> int:
    """The first day of a week, in cron's and Dagster's numbering (Sunday = 0)."""
    return (WEEKDAYS.index(spec.partitions.week_starts_on) + 1) % 7


def monitoring_partitions(spec: ProjectSpec) -> dg.TimeWindowPartitionsDefinition:
    """Periods from the first data partition up to the current one (what was logged so far);
    monitoring goes on past ``partitions.end``, as serving does."""
    start = spec.partitions.start.strftime(KEY_FORMAT)
    kind = granularity(spec)
    if kind == "monthly":
        return dg.MonthlyPartitionsDefinition(
            start_date=start, fmt=KEY_FORMAT, day_offset=1, end_offset=1
        )
    if kind == "weekly":
        return dg.WeeklyPartitionsDefinition(
            start_date=start, fmt=KEY_FORMAT, day_offset=_cron_weekday(spec), end_offset=1
        )
    return dg.DailyPartitionsDefinition(start_date=start, fmt=KEY_FORMAT, end_offset=1)


def period_days(spec: ProjectSpec, key: str) -> tuple[dt.date, dt.date]:
    """The UTC days of monitoring partition ``key``: first day, and the day after the last."""
    first = dt.date.fromisoformat(key)
    end = shift_periods(first, granularity(spec), 1)
    return first, end if end is not None else dt.date.max


def schedule_cron(spec: ProjectSpec) -> str:
    """Shortly after a period ends (00:15 UTC of the next period's first day)."""
    kind = granularity(spec)
    if kind == "monthly":
        return "15 0 1 * *"
    if kind == "weekly":
        return f"15 0 * * {_cron_weekday(spec)}"
    return "15 0 * * *"


def period_before(spec: ProjectSpec, when: dt.datetime) -> str:
    """The key of the period that holds the UTC day before ``when``."""
    day = (when.astimezone(dt.UTC) - dt.timedelta(days=1)).date()
    return period_start(day, granularity(spec), spec.partitions.week_starts_on).strftime(KEY_FORMAT)
