"""``monitoring.period``: a UTC day by default, or one data partition of the project; a
wrong value is refused naming file and field; the review page's panel keeps a period that
ends after the promotion."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
import yaml

from mlplatform.defs.monitoring_periods import (
    monitoring_partitions,
    period_before,
    period_days,
    schedule_cron,
)
from mlplatform.prediction_log import write_monitoring_summary
from mlplatform.serving.since_promotion import monitoring_days
from mlplatform.spec import ProjectSpec, SpecError, load_spec
from mlplatform_tests.projects import example_dict

pytestmark = pytest.mark.unit


def spec_with(tmp_path: Path, monitoring: dict[str, object], **partitions: object) -> ProjectSpec:
    data = example_dict()
    data["monitoring"] = monitoring
    data["partitions"] = {**data["partitions"], **partitions}
    path = tmp_path / f"{data['name']}.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_spec(path)


def test_default_is_one_utc_day(tmp_path: Path) -> None:
    spec = spec_with(tmp_path, {})
    assert spec.monitoring.period == "daily"
    assert period_days(spec, "2026-06-03") == (dt.date(2026, 6, 3), dt.date(2026, 6, 4))
    assert schedule_cron(spec) == "15 0 * * *"
    assert period_before(spec, dt.datetime(2026, 6, 4, 0, 15, tzinfo=dt.UTC)) == "2026-06-03"
    assert "2026-06-03" in monitoring_partitions(spec).get_partition_keys()


def test_per_partition_follows_the_datas_granularity(tmp_path: Path) -> None:
    monthly = spec_with(tmp_path, {"period": "partition"})
    assert monthly.partitions.granularity == "monthly"
    assert period_days(monthly, "2026-12-01") == (dt.date(2026, 12, 1), dt.date(2027, 1, 1))
    assert schedule_cron(monthly) == "15 0 1 * *"
    assert period_before(monthly, dt.datetime(2027, 1, 1, 0, 15, tzinfo=dt.UTC)) == "2026-12-01"
    weekly = spec_with(
        tmp_path,
        {"period": "partition"},
        granularity="weekly",
        start="2026-01-07",
        week_starts_on="wednesday",
    )
    keys = monitoring_partitions(weekly).get_partition_keys()
    assert keys[:2] == ["2026-01-07", "2026-01-14"]
    assert period_days(weekly, "2026-01-14") == (dt.date(2026, 1, 14), dt.date(2026, 1, 21))
    assert schedule_cron(weekly) == "15 0 * * 3"
    assert period_before(weekly, dt.datetime(2026, 1, 21, 0, 15, tzinfo=dt.UTC)) == "2026-01-14"


def test_an_unknown_period_names_file_field_and_the_choices(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as info:
        spec_with(tmp_path, {"period": "monthly"})
    text = str(info.value)
    assert str(tmp_path) in text and "monitoring.period" in text
    assert "'monthly' is not a monitoring period; use 'daily'" in text and "'partition'" in text


def test_the_panel_keeps_a_partition_that_ends_after_the_promotion(tmp_path: Path) -> None:
    month = {"day": "2026-06-01", "end": "2026-07-01", "requests": 3, "rows": 4}
    day = {"day": "2026-06-09", "requests": 1, "rows": 1}
    for summary in (month, day, {"day": "2026-06-10", "requests": 2, "rows": 2}):
        write_monitoring_summary(tmp_path, "p", dt.date.fromisoformat(summary["day"]), summary)
    since = dt.datetime(2026, 6, 10, 9, tzinfo=dt.UTC)  # promoted mid-month
    found = monitoring_days(tmp_path, "p", since)
    assert [(s.day, s.end) for s in found] == [("2026-06-01", "2026-07-01"), ("2026-06-10", None)]
    assert json.loads((tmp_path / "monitoring" / "p" / "2026-06-01.json").read_text()) == month
