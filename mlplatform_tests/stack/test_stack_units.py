"""The team deployment's pure parts: production instance config, run tags, stack config,
and the process records that make ``down`` stop exactly what ``up`` started."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
import yaml
from dagster._core.instance.config import dagster_instance_config
from dagster._core.workspace.config_schema import process_workspace_config
from dagster._serdes.config_class import ConfigurableClassData
from pydantic import SecretStr

from mlplatform.deploy import DAGSTER_YAML, WORKSPACE_YAML
from mlplatform.deploy.coordinator import (
    LANE_TAG,
    WORK_PROJECT_TAG,
    ProjectQueuedRunCoordinator,
    project_of_run,
)
from mlplatform.stack import processes
from mlplatform.stack.config import (
    DEFAULT_PORTS,
    StackConfig,
    load_config,
    platform_env,
    save_config,
    service_env,
)
from mlplatform.stack.services import command
from mlplatform_tests.waiting import wait_for

PG_ENV = {
    "DAGSTER_PG_HOST": "db",
    "DAGSTER_PG_PORT": "6543",
    "DAGSTER_PG_USER": "u",
    "DAGSTER_PG_PASSWORD": "p",
    "DAGSTER_PG_DB": "dagster",
    "DAGSTER_MAX_CONCURRENT_RUNS": "3",
}


def test_production_instance_config_is_valid_and_reads_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in PG_ENV.items():
        monkeypatch.setenv(key, value)
    (tmp_path / "dagster.yaml").write_text(DAGSTER_YAML.read_text())
    config, _ = dagster_instance_config(str(tmp_path))  # validates against Dagster's schema
    db = config["storage"]["postgres"]["postgres_db"]
    assert db["hostname"] == {"env": "DAGSTER_PG_HOST"} and db["scheme"] == "postgresql+psycopg2"
    assert config["run_monitoring"]["enabled"] and config["run_monitoring"]["start_timeout_seconds"]
    assert config["run_retries"] == {
        "enabled": True,
        "max_retries": 1,
        "retry_on_asset_or_op_failure": False,
    }
    assert config["telemetry"] == {"enabled": False}
    coordinator = config["run_coordinator"]
    built = ConfigurableClassData(
        coordinator["module"], coordinator["class"], yaml.safe_dump(coordinator["config"])
    ).rehydrate(as_type=ProjectQueuedRunCoordinator)
    queue = built.get_run_queue_config()
    assert built.work_limit == 3  # from DAGSTER_MAX_CONCURRENT_RUNS
    assert queue.max_concurrent_runs == 4  # plus the promotion lane
    assert queue.tag_concurrency_limits == [
        {"key": LANE_TAG, "value": "promotion", "limit": 1},
        {"key": LANE_TAG, "value": "work", "limit": 3},
        {"key": WORK_PROJECT_TAG, "value": {"applyLimitPerUniqueValue": True}, "limit": 3},
    ]


def test_production_workspace_loads_the_code_server_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    raw = yaml.safe_load(WORKSPACE_YAML.read_text())
    monkeypatch.setenv("DAGSTER_CODE_SERVER_HOST", "code")
    monkeypatch.setenv("DAGSTER_CODE_SERVER_PORT", "4100")
    processed = process_workspace_config(raw)
    assert processed.success, processed.errors
    assert processed.value["load_from"][0]["grpc_server"]["port"] == 4100
    grpc = raw["load_from"][0]["grpc_server"]
    assert grpc == {
        "host": {"env": "DAGSTER_CODE_SERVER_HOST"},
        "port": {"env": "DAGSTER_CODE_SERVER_PORT"},
        "location_name": "mlplatform",
    }


def test_project_of_run_from_assets_checks_or_job_name() -> None:
    raw, features = dg.AssetKey(["churn", "raw"]), dg.AssetKey(["churn", "features"])
    assert project_of_run("__ASSET_JOB", [raw, features]) == "churn"
    assert project_of_run("__ASSET_JOB", None, [dg.AssetCheckKey(raw, "schema")]) == "churn"
    assert project_of_run("churn__data", None) == "churn"
    assert project_of_run("my__proj__train", None) == "my__proj"
    assert project_of_run("__ASSET_JOB", [raw, dg.AssetKey(["sales", "raw"])]) is None
    assert project_of_run("__ASSET_JOB", None) is None
    assert project_of_run("adhoc", None) is None


def test_stack_config_round_trip_overrides_and_env(tmp_path: Path) -> None:
    config = StackConfig(home=tmp_path / "home", projects_dir=tmp_path / "projects")
    assert dict(config.ports) == DEFAULT_PORTS
    changed = config.with_overrides(ports={"mlflow": 5999, "webserver": None}, host="0.0.0.0")
    assert changed.port("mlflow") == 5999 and changed.port("webserver") == 3000
    assert changed.connect_host == "127.0.0.1" and changed.url("mlflow") == "http://127.0.0.1:5999"
    with pytest.raises(ValueError, match="unknown service"):
        config.with_overrides(ports={"nope": 1})
    save_config(changed)
    again = load_config(tmp_path / "home", tmp_path / "elsewhere")
    assert again == changed
    env = platform_env(changed, SecretStr("s3cret"))
    assert env["MLPLATFORM_LEDGER_URL"] == (
        "postgresql+psycopg2://mlplatform:s3cret@127.0.0.1:5433/mlplatform"
    )
    assert env["MLPLATFORM_SEARCH_URL"] == env["MLPLATFORM_LEDGER_URL"]
    assert env["MLPLATFORM_MLFLOW_TRACKING_URI"] == "http://127.0.0.1:5999"
    assert env["DAGSTER_HOME"] == str(tmp_path / "home" / "stack" / "dagster")
    assert set(PG_ENV) <= set(env)
    mlflow = service_env(
        changed, SecretStr("s3cret"), "mlflow", {"PATH": "/bin", "DAGSTER_HOME": "/x"}
    )
    assert mlflow["PATH"] == "/bin" and mlflow["DAGSTER_HOME"] == env["DAGSTER_HOME"]
    assert mlflow["MLFLOW_BACKEND_STORE_URI"].endswith("@127.0.0.1:5433/mlflow")
    for service in ("mlflow", "code_server", "webserver", "daemon", "serving"):
        assert not any("s3cret" in part for part in command(service, changed))


def test_stop_signals_our_group_and_never_a_reused_pid(tmp_path: Path) -> None:
    """A service with a child: stop ends both. A record whose start time does not match the
    live process (a reused pid) is not ours: stop leaves that process alone."""
    script = (
        "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', "
        "'import time; time.sleep(60)']); time.sleep(60)"
    )
    record = processes.start(
        "demo", [sys.executable, "-c", script], dict(os.environ), tmp_path / "demo.log",
        tmp_path / "demo.json", cwd=tmp_path,
    )  # fmt: skip
    wait_for(
        "the service's child to start",
        lambda: len(processes.group_members(record)) >= 2,
        30,
        interval=0.1,
    )
    members = processes.group_members(record)
    assert len(members) == 2 and record.pid in members
    assert processes.ProcessRecord.load(tmp_path / "demo.json") == record

    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        impostor = processes.ProcessRecord(
            "x", bystander.pid, record.start_ticks - 1, ("sleep",), "", 0.0
        )
        assert not processes.is_running(impostor)
        assert processes.stop(impostor) == []
        assert bystander.poll() is None  # untouched
    finally:
        bystander.kill()
        bystander.wait()

    assert processes.is_running(record)
    assert sorted(processes.stop(record, timeout=10)) == sorted(members)
    assert processes.group_members(record) == [] and not processes.is_running(record)
    assert processes.stop(record) == []  # a second stop is a no-op
