"""The partition calendar: period starts, shifts and counts; dates that make no keys."""

from __future__ import annotations

import datetime as dt

from mlplatform.spec.data import Partitions
from mlplatform.spec.training import Training
from mlplatform.spec.vocabulary import FIRST_DATE, LAST_DATE, WEEKDAYS


def period_start(day: dt.date, granularity: str, week_starts_on: str = "sunday") -> dt.date:
    """The start of the period (partition key) that contains ``day``."""
    if granularity == "monthly":
        return day.replace(day=1)
    if granularity == "weekly":
        back = (day.weekday() - WEEKDAYS.index(week_starts_on)) % 7
        return day - dt.timedelta(days=back)
    return day


def shift_periods(day: dt.date, granularity: str, n: int) -> dt.date | None:
    """``day`` moved ``n`` periods forward; None when that leaves the calendar (year 9999)."""
    try:
        if granularity == "monthly":
            months = day.year * 12 + day.month - 1 + n
            return day.replace(year=months // 12, month=months % 12 + 1)
        return day + dt.timedelta(days=n * (7 if granularity == "weekly" else 1))
    except (OverflowError, ValueError):
        return None


def count_periods(start: dt.date, end: dt.date, granularity: str) -> int:
    """Whole periods from ``start`` (a key) to ``end`` (exclusive)."""
    if granularity == "monthly":
        return (end.year - start.year) * 12 + end.month - start.month
    return (end - start).days // (7 if granularity == "weekly" else 1)


def partition_problems(
    partitions: Partitions, training: Training | None, written: set[str] | frozenset[str]
) -> list[tuple[str, str]]:
    """Partition dates Dagster cannot make keys of, or that would leave no cutoff."""
    p = partitions
    g, problems = p.granularity, []
    span = f"between {FIRST_DATE} and {LAST_DATE}"
    if "week_starts_on" in written and g != "weekly":
        problems.append(
            (
                "partitions.week_starts_on",
                f"applies to weekly partitions only, not {g}; remove it or use weekly",
            )
        )
    for field, day in (("start", p.start), ("end", p.end)):
        if day is None:
            continue
        if not FIRST_DATE <= day <= LAST_DATE:
            problems.append((f"partitions.{field}", f"{day} is out of range; use a date {span}"))
            continue
        key = period_start(day, g, p.week_starts_on)
        if key == day:
            continue
        if g == "monthly":
            why = "monthly keys are the 1st of a month"
        else:
            why = (
                f"{day} is a {WEEKDAYS[day.weekday()].capitalize()} and weekly keys start on "
                f"{p.week_starts_on.capitalize()} (partitions.week_starts_on)"
            )
        fix = f"use {key}"
        if g == "weekly":
            fix += f" or set partitions.week_starts_on: {WEEKDAYS[day.weekday()]}"
        problems.append((f"partitions.{field}", f"not a period start: {why}; {fix}"))
    if any(f"{day} is out of range" in msg for day in (p.start, p.end) for _, msg in problems):
        return problems
    if p.end is not None and p.end <= p.start:
        return [*problems, ("partitions.end", f"{p.end} must be after 'start' ({p.start})")]
    if training is None:
        return problems
    first_cutoff = shift_periods(p.start, g, training.window)
    if first_cutoff is None or first_cutoff > LAST_DATE:
        problems.append(
            (
                "training.window",
                f"{training.window} {g} partitions after {p.start} reach past {LAST_DATE}; "
                "use a smaller window",
            )
        )
    elif p.end is not None and first_cutoff >= p.end:
        n = count_periods(p.start, p.end, g)
        problems.append(
            (
                "training.window",
                f"{training.window} is not shorter than the {n} partition(s) from "
                f"{p.start} to {p.end}: no cutoff has a full window; lower training.window "
                "or move partitions.end",
            )
        )
    return problems
