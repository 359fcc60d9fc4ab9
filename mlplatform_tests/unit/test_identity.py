"""Who trained a model and who acts on the ledger come from what cannot be typed in."""

from __future__ import annotations

import os
import pwd

import pytest

from mlplatform.defs.models import triggered_by
from mlplatform.identity import os_user


def test_the_system_account_is_looked_up_by_uid_not_read_from_user(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("USER", "LOGNAME", "USERNAME", "LNAME"):
        monkeypatch.setenv(name, "mallory")
    assert os_user() == pwd.getpwuid(os.getuid()).pw_name != "mallory"


def test_a_user_tag_is_believed_only_from_the_clis_in_process_runs() -> None:
    tags = {"mlplatform/user": "alice"}
    assert triggered_by(tags, in_process=True) == "alice"
    # a run launched through Dagster (web UI, daemon): anyone may type that tag
    assert triggered_by(tags, in_process=False) == "unknown"


def test_a_web_ui_run_without_a_user_is_unknown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DAGSTER_CLOUD_DEPLOYMENT_NAME", raising=False)
    assert triggered_by({}, in_process=False) == "unknown"
    assert triggered_by({"dagster/partition": "2024-05-01"}, in_process=False) == "unknown"
    # Dagster OSS has no users: a dagster/user tag there was typed by whoever launched it
    assert triggered_by({"dagster/user": "bob@example.com"}, in_process=False) == "unknown"
    monkeypatch.setenv("DAGSTER_CLOUD_DEPLOYMENT_NAME", "prod")  # Dagster+ sets the user tag
    assert triggered_by({"dagster/user": "bob@example.com"}, in_process=False) == (
        "bob@example.com"
    )


def test_sensors_and_schedules_are_named() -> None:
    sensor = {"dagster/sensor_name": "churn__landing", "mlplatform/trigger": "landing"}
    assert triggered_by(sensor, in_process=False) == "sensor:churn__landing"
    schedule = {"dagster/schedule_name": "churn__retrain"}
    assert triggered_by(schedule, in_process=False) == "schedule:churn__retrain"
    assert triggered_by({"mlplatform/trigger": "automation"}, in_process=True) == "automation"
    # the platform's own trigger tag is believed only where the platform set it
    assert triggered_by({"mlplatform/trigger": "landing"}, in_process=False) == "unknown"
