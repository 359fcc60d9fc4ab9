"""The run queue of every instance: limits that fit the machine, per project, a promotion lane."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest
import yaml
from dagster._core.instance.config import dagster_instance_config
from dagster._serdes import ConfigurableClassData

from mlplatform.defs.runs import EMBEDDED_YAML, LEGACY_YAML, write_instance_yaml
from mlplatform.deploy.coordinator import (
    LANE_TAG,
    WORK_PROJECT_TAG,
    ProjectQueuedRunCoordinator,
    default_runs_per_project,
    lane_of_run,
    machine_run_limit,
    queue_limits,
)

ROOT = Path(__file__).parents[2]
GIB = 1024**3


def test_machine_limit_follows_cores_and_memory() -> None:
    assert machine_run_limit(cpus=2, memory_bytes=24 * GIB) == 2
    assert machine_run_limit(cpus=16, memory_bytes=8 * GIB) == 5  # memory decides
    assert machine_run_limit(cpus=1, memory_bytes=24 * GIB) == 1
    assert machine_run_limit(cpus=8, memory_bytes=1 * GIB) == 1  # never zero
    assert machine_run_limit() >= 1


def test_runs_per_project() -> None:
    assert [default_runs_per_project(n) for n in (1, 2, 3, 4, 9, 16)] == [1, 2, 2, 2, 5, 8]
    assert default_runs_per_project(-1) == -1


def test_promotions_get_a_lane_on_top_of_the_work_limit() -> None:
    total, limits = queue_limits(3, 2)
    assert total == 4
    assert {"key": LANE_TAG, "value": "promotion", "limit": 1} in limits
    assert {"key": LANE_TAG, "value": "work", "limit": 3} in limits
    per_project = {"key": WORK_PROJECT_TAG, "value": {"applyLimitPerUniqueValue": True}}
    assert {**per_project, "limit": 2} in limits
    total, limits = queue_limits(-1, -1)
    assert total == -1 and limits == [{"key": LANE_TAG, "value": "promotion", "limit": 1}]


def test_lane_of_run() -> None:
    assert lane_of_run([dg.AssetKey(["churn", "production"])]) == "promotion"
    assert lane_of_run([dg.AssetKey(["churn", "bundle"])]) == "work"
    assert lane_of_run([dg.AssetKey(["a", "production"]), dg.AssetKey(["a", "raw"])]) == "work"
    assert lane_of_run([]) == "work"


def coordinator_of(dagster_home: Path) -> ProjectQueuedRunCoordinator:
    config, _ = dagster_instance_config(str(dagster_home))  # validated against Dagster's schema
    data = config["run_coordinator"]
    return ConfigurableClassData(
        data["module"], data["class"], yaml.safe_dump(data.get("config") or {})
    ).rehydrate(as_type=ProjectQueuedRunCoordinator)


def test_embedded_instance_derives_its_limit_and_can_be_overridden(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert (ROOT / "dagster.yaml").read_text() == EMBEDDED_YAML.read_text()
    write_instance_yaml(tmp_path / "dagster.yaml")
    monkeypatch.delenv("MLPLATFORM_MAX_CONCURRENT_RUNS", raising=False)
    built = coordinator_of(tmp_path)
    assert built.work_limit == machine_run_limit()
    assert built.get_run_queue_config().max_concurrent_runs == machine_run_limit() + 1
    monkeypatch.setenv("MLPLATFORM_MAX_CONCURRENT_RUNS", "5")
    built = coordinator_of(tmp_path)
    assert (built.work_limit, built.per_project_limit) == (5, 3)


def test_instance_yaml_is_refreshed_only_when_ours(tmp_path: Path) -> None:
    path = tmp_path / "dagster.yaml"
    path.write_text(LEGACY_YAML)  # what earlier versions wrote
    write_instance_yaml(path)
    assert path.read_text() == EMBEDDED_YAML.read_text()
    path.write_text(EMBEDDED_YAML.read_text().replace("dequeue_interval_seconds: 2", "x: 1"))
    write_instance_yaml(path)  # an older managed copy
    assert path.read_text() == EMBEDDED_YAML.read_text()
    own = "telemetry:\n  enabled: true\n"
    path.write_text(own)
    write_instance_yaml(path)
    assert path.read_text() == own
