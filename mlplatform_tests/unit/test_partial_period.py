"""Partial periods: a partition with far fewer rows than the partitions before it."""

from __future__ import annotations

from mlplatform.steps.features import partial_period

WEEKS = {f"2024-0{m}-0{d}": rows for m, d, rows in [(1, 7, 700), (1, 14, 690), (2, 1, 720)]}


def test_three_day_week_among_full_weeks_is_flagged() -> None:
    why = partial_period(300, WEEKS, 0.5)
    assert why is not None
    assert why.startswith("300 rows, 43% of the median 700 of the 3 partitions before it")
    assert "quality.partial_period_share=0.5" in why


def test_normal_and_first_partitions_are_not_flagged() -> None:
    assert partial_period(650, WEEKS, 0.5) is None
    assert partial_period(350, WEEKS, 0.5) is None  # exactly half the median is not below it
    assert partial_period(5, {}, 0.5) is None  # nothing to compare with yet
    assert partial_period(600, WEEKS, 0.9) is not None  # the share is the spec's to choose
