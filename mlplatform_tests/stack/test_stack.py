"""The team stack for real: PostgreSQL, MLflow server, Dagster code server, webserver and
daemon, and the serving app as separate processes, brought up by ``mlplatform.stack`` (the code
behind ``mlplatform stack up``) on free ports in a temporary home, and taken down at the end.

Needs Debian's PostgreSQL server binaries (``apt-get install -y postgresql``; ``.ci/run``
installs them); without them the tests fail on purpose.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import shutil
import signal
import socket
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import dagster as dg
import httpx
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
import yaml
from dagster_graphql import DagsterGraphQLClient

from mlplatform.deploy import PROJECT_TAG
from mlplatform.examples.generate import generate_example
from mlplatform.ledger import Ledger
from mlplatform.resources.mlflow import MlflowTracking
from mlplatform.stack import control, processes
from mlplatform.stack.config import PROCESS_SERVICES, StackConfig, platform_env
from mlplatform_tests import waiting
from mlplatform_tests.projects import variant

MAX_RUNS = 2
TOKENS = {
    "MLPLATFORM_APPROVER_TOKENS": json.dumps({"bob": "bob-secret"}),
    "MLPLATFORM_READER_TOKENS": json.dumps({"app": "app-secret"}),
}
LOCATION, REPOSITORY = "mlplatform", "__repository__"
BAD_SIGNS = ("deadlock", "could not serialize", "too many connections", "remaining connection")


def free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


@dataclass
class Stack:
    config: StackConfig
    env: dict[str, str]
    instance: dg.DagsterInstance
    graphql: DagsterGraphQLClient

    @property
    def home(self) -> Path:
        return self.config.home

    def logs(self, *services: str) -> str:
        return "\n".join(
            f"--- {s} ({self.config.log_file(s)}):\n"
            + processes.log_tail(self.config.log_file(s), 2500)
            for s in services or ("daemon", "code_server")
        )

    def wait_for(
        self,
        what: str,
        check: Callable[[], Any],
        seconds: float,
        *services: str,
        interval: float = 1,
    ) -> Any:
        return waiting.wait_for(
            what, check, seconds, interval=interval, details=lambda: self.logs(*services)
        )

    def sql(self, database: str, query: str) -> list[Any]:
        url = self.env["MLPLATFORM_LEDGER_URL"].rsplit("/", 1)[0] + f"/{database}"
        engine = sa.create_engine(url)
        try:
            with engine.connect() as conn:
                return list(conn.execute(sa.text(query)))
        finally:
            engine.dispose()

    def failures(self, run_ids: list[str]) -> str:
        """Why runs failed: their failure and engine messages (for assertion messages)."""
        kinds = {
            dg.DagsterEventType.RUN_FAILURE,
            dg.DagsterEventType.STEP_FAILURE,
            dg.DagsterEventType.ENGINE_EVENT,
        }
        lines = []
        for run_id in run_ids:
            run = self.instance.get_run_by_id(run_id)
            if run is None or run.status == dg.DagsterRunStatus.SUCCESS:
                continue
            lines.append(
                f"run {run_id} {run.job_name} {run.tags.get('dagster/partition')}: "
                f"{run.status.value}"
            )
            for event in self.instance.all_logs(run_id, of_type=kinds):
                error = getattr(event.dagster_event.event_specific_data, "error", None)
                lines.append(f"  {event.message} {error.to_string() if error else ''}"[:3000])
        return "\n".join(lines)

    def runs(self, **tags: str) -> list[dg.RunRecord]:
        return list(self.instance.get_run_records(dg.RunsFilter(tags=tags)))


LANDED = 8  # months landed at once for `live`: 8 data runs queued in one sensor tick


def project_spec(name: str, automation: bool) -> dict[str, Any]:
    spec = variant("binary", name)
    spec["automation"] = {"enabled": automation, "sensor_interval_seconds": 5}
    spec["training"]["window"] = LANDED - 1  # the 8 months make exactly one cutoff: the last
    spec.pop("schedule", None)
    return spec


def land_live(stack: Stack) -> list[Path]:
    """Land `live`'s 8 monthly files (once the automation sensor has ticked, so it sees
    them as new); the same bytes again launch nothing."""
    stack.wait_for(
        "the automation sensor's first tick", lambda: sensor_ticked(stack, "live__automation"), 90
    )
    landing = stack.home / "landing" / "live"
    if landing.is_dir():
        return sorted(landing.glob("*.csv"))
    staged = generate_example(stack.home / "staged", months=LANDED, rows_per_month=200)
    landing.mkdir(parents=True)
    for path in staged:  # renames, microseconds apart: one sensor tick sees all 8
        path.rename(landing / path.name)
    return sorted(landing.glob("*.csv"))


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    # PostgreSQL runs as the `postgres` user when we are root: its folder must be reachable
    base = Path(tempfile.mkdtemp(prefix="mlplatform-stack-"))
    base.chmod(0o755)
    projects = base / "projects"
    projects.mkdir()
    for name, automation in (("live", True), ("bulk", False)):
        spec = project_spec(name, automation)
        (projects / f"{name}.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    services = ("postgres", "mlflow", "code_server", "webserver", "serving")
    ports = dict(zip(services, free_ports(len(services)), strict=True))
    config = StackConfig(
        home=base / "home", projects_dir=projects, ports=ports, max_concurrent_runs=MAX_RUNS
    )
    base_env = {**os.environ, **TOKENS}
    for key in [k for k in base_env if k.startswith(("MLPLATFORM_", "DAGSTER_"))]:
        if key not in TOKENS:
            base_env.pop(key)
    instance = None
    try:
        control.up(config, base_env=base_env, timeout=240, notify=lambda m: print(m, flush=True))
        env = platform_env(config, control.cluster(config).password)
        with mock.patch.dict(os.environ, env):
            instance = dg.DagsterInstance.from_config(str(config.dagster_home))
        graphql = DagsterGraphQLClient("127.0.0.1", port_number=config.port("webserver"))
        yield Stack(config, {**base_env, **env}, instance, graphql)
    finally:
        if instance is not None:
            instance.dispose()
        control.down(config, notify=lambda m: print(m, flush=True))
        shutil.rmtree(base, ignore_errors=True)


def submit(stack: Stack, job: str, partition: str) -> str:
    return stack.graphql.submit_job_execution(
        job,
        repository_location_name=LOCATION,
        repository_name=REPOSITORY,
        tags={"dagster/partition": partition},
    )


def sensor_ticked(stack: Stack, sensor: str) -> bool:
    query = """
    query($selector: SensorSelector!) {
      sensorOrError(sensorSelector: $selector) {
        ... on Sensor { sensorState { ticks(limit: 1) { status } } }
      }
    }"""
    selector = {
        "repositoryLocationName": LOCATION,
        "repositoryName": REPOSITORY,
        "sensorName": sensor,
    }
    data = stack.graphql._execute(query, {"selector": selector})
    return bool(data["sensorOrError"].get("sensorState", {}).get("ticks"))


def test_status_reports_every_service_running(stack: Stack) -> None:
    rows = {row.service: row for row in control.status(stack.config)}
    assert {s: r.state for s, r in rows.items()} == dict.fromkeys(rows, "running")
    assert set(rows) == {"postgres", *PROCESS_SERVICES}
    for service in PROCESS_SERVICES:
        record = control.record(stack.config, service)
        assert record is not None and rows[service].pid == record.pid
        assert Path(rows[service].log).is_file()
    # the production instance really is PostgreSQL
    assert type(stack.instance.run_storage).__name__ == "PostgresRunStorage"
    assert type(stack.instance.event_log_storage).__name__ == "PostgresEventLogStorage"
    assert stack.sql("dagster", "SELECT count(*) FROM runs")[0][0] >= 0


def test_landed_files_become_a_promoted_bundle_on_postgres(stack: Stack) -> None:
    """Landing sensor -> data runs -> automation trains, evaluates and bundles -> approval over
    HTTP -> promotion sensor -> Postgres ledger row + MLflow alias -> the server swaps."""
    p = "live"
    files = land_live(stack)
    bundles = stack.home / "bundles"

    def published() -> str | None:
        # the manifest is on disk before the run registers it in MLflow and records the
        # materialization: wait for the event, which comes last
        manifests = list(bundles.glob("*/manifest.json")) if bundles.is_dir() else []
        recorded = stack.instance.get_latest_materialization_event(dg.AssetKey([p, "bundle"]))
        return manifests[0].parent.name if manifests and recorded is not None else None

    bundle = stack.wait_for("automation to publish a bundle", published, 300)
    manifest = json.loads((bundles / bundle / "manifest.json").read_text())
    assert manifest["cutoff"] == files[-1].stem

    # materializations and check results, read back through the production instance ...
    for asset in ("raw", "features"):
        key = dg.AssetKey([p, asset])
        assert stack.instance.get_materialized_partitions(key) == {f.stem for f in files}
    evaluation = stack.instance.get_latest_materialization_event(dg.AssetKey([p, "evaluation"]))
    assert evaluation is not None and evaluation.asset_materialization.partition == files[-1].stem
    history = stack.instance.event_log_storage.get_asset_check_execution_history(
        dg.AssetCheckKey(dg.AssetKey([p, "raw"]), "schema"), limit=20
    )
    assert len(history) == LANDED and {r.status.value for r in history} == {"SUCCEEDED"}
    latest = stack.instance.event_log_storage.get_latest_asset_check_execution_by_key(
        [dg.AssetCheckKey(dg.AssetKey([p, "bundle"]), "parity")]
    )
    assert [r.status.value for r in latest.values()] == ["SUCCEEDED"]
    # ... and with plain SQL on the dagster database, to be sure they live in PostgreSQL
    mats = stack.sql(
        "dagster",
        "SELECT asset_key, partition FROM event_logs "
        "WHERE dagster_event_type = 'ASSET_MATERIALIZATION'",
    )
    stored = {(tuple(json.loads(key)), part) for key, part in mats}  # AssetKey.to_string()
    assert stored >= {((p, "raw"), f.stem) for f in files} | {((p, "bundle"), files[-1].stem)}
    checks = stack.sql(
        "dagster",
        "SELECT check_name, execution_status FROM asset_check_executions "
        f'WHERE asset_key LIKE \'%"{p}", "raw"%\'',
    )
    assert sorted({name for name, _ in checks}) == ["ranges", "row_count", "schema", "target"]
    assert {status for _, status in checks} == {"SUCCEEDED"}
    runs = stack.runs()
    untagged = [
        (r.dagster_run.job_name, r.dagster_run.tags)
        for r in runs
        if r.dagster_run.tags.get(PROJECT_TAG) != p
    ]
    assert runs and untagged == []

    # MLflow: runs and the registered version went through the tracking server (artifacts
    # proxied into the stack's artifact store)
    mlflow = MlflowTracking(tracking_uri=stack.env["MLPLATFORM_MLFLOW_TRACKING_URI"],
                            artifact_root="unused")  # fmt: skip
    version = mlflow.version_of_bundle(p, bundle)
    assert version is not None
    source = mlflow.client.get_model_version(p, version)
    run = mlflow.client.get_run(source.run_id)
    assert run.info.artifact_uri.startswith("mlflow-artifacts:")
    stored = list((stack.config.mlflow_artifacts).rglob("MLmodel"))
    assert stored, "no model artifact arrived in the MLflow server's artifact store"

    # approval over HTTP -> promotion sensor -> ledger on PostgreSQL and the MLflow alias
    serving = stack.config.url("serving")
    reader = {"Authorization": "Bearer app-secret"}
    approver = {"Authorization": "Bearer bob-secret"}
    response = httpx.post(
        f"{serving}/v1/projects/{p}/candidates/{bundle}/approve",
        headers=approver,
        json={"comment": "slices look fine"},
        timeout=30,
    )
    assert response.status_code == 201, response.text
    ledger = Ledger(stack.env["MLPLATFORM_LEDGER_URL"])
    try:

        def promoted() -> bool:
            row = ledger.production(p)
            return row is not None and row.to_bundle == bundle

        stack.wait_for("the promotion sensor to promote the approved bundle", promoted, 120)
    finally:
        ledger.dispose()
    rows = stack.sql("mlplatform", "SELECT project, to_bundle, actor FROM ledger_promotions")
    assert [tuple(r) for r in rows] == [(p, bundle, "bob")]
    assert stack.wait_for(
        "the MLflow alias", lambda: mlflow.production_alias(p) == bundle, 60, "daemon"
    )

    def served() -> bool:
        r = httpx.get(f"{serving}/v1/projects/{p}/production", headers=reader, timeout=10)
        return r.status_code == 200 and r.json().get("bundle_id") == bundle

    stack.wait_for("the serving app to swap to the promoted bundle", served, 60, "serving")


def test_cli_status_reads_the_stack_instance(stack: Stack) -> None:
    """With the stack's environment (``mlplatform stack env``) the CLI reads PostgreSQL: the
    partitions the daemon materialized show as materialized (the embedded instance has none)."""
    import subprocess
    import sys

    assert stack.env["MLPLATFORM_DAGSTER_HOME_DIR"] == str(stack.config.dagster_home)
    result = subprocess.run(
        [sys.executable, "-m", "mlplatform.cli", "status", "live", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **stack.env},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    raw = {r["partition"]: r["state"] for r in rows if r["asset"] == "live/raw"}
    assert len(raw) >= LANDED and set(raw.values()) == {"materialized"}, raw
    assert not (stack.home / "dagster" / "history").exists()


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    """The largest number of intervals open at one instant."""
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    most = current = 0
    for _, step in events:
        current += step
        most = max(most, current)
    return most


def test_eight_runs_queued_at_once_respect_the_limit(stack: Stack) -> None:
    """The landing sensor queued `live`'s 8 data runs in one tick: all succeed, never more
    than the limit run at once, and no lock or connection errors anywhere."""
    files = land_live(stack)
    sensor = {"dagster/sensor_name": "live__landing"}

    def all_done() -> list[dg.RunRecord] | None:
        records = stack.runs(**sensor)
        finished = [r for r in records if r.dagster_run.is_finished]
        return records if len(finished) == LANDED else None

    records = stack.wait_for("8 queued runs to finish", all_done, 300, "daemon", "code_server")
    run_ids = [r.dagster_run.run_id for r in records]
    statuses = [r.dagster_run.status for r in records]
    assert statuses == [dg.DagsterRunStatus.SUCCESS] * LANDED, stack.failures(run_ids)
    assert sorted(r.dagster_run.tags["dagster/partition"] for r in records) == [
        f.stem for f in files
    ]
    assert len({r.dagster_run.tags["dagster/tick"] for r in records}) == 1  # queued at once
    assert all(r.dagster_run.tags.get(PROJECT_TAG) == "live" for r in records)
    intervals = [(r.start_time, r.end_time) for r in records]
    assert all(s is not None and e is not None for s, e in intervals)
    assert max_overlap(intervals) <= MAX_RUNS, intervals
    for service in ("daemon", "webserver", "code_server", "postgres"):
        log = stack.config.log_file(service).read_text(errors="replace").lower()
        assert not [s for s in BAD_SIGNS if s in log], stack.logs(service)


def worker_pid(stack: Stack, run_id: str) -> int | None:
    for event in stack.instance.all_logs(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
        found = re.search(r"Started process for run \(pid: (\d+)\)", event.message or "")
        if found:
            return int(found.group(1))
    return None


def step_started(stack: Stack, run_id: str, step: str) -> bool:
    events = stack.instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_START)
    return any(e.step_key == step for e in events)


def test_killed_daemon_and_run_worker_are_detected_and_retried(stack: Stack) -> None:
    """kill -9 the daemon during a run: the run goes on (its worker belongs to the code server).
    kill -9 the run worker too: its code server marks the run failed at once; the restarted
    daemon retries it (run_retries) and the retry succeeds. Nothing is left half-written."""
    p = "bulk"
    landing = stack.home / "landing" / p
    (big,) = generate_example(
        landing, start=datetime.date(2023, 9, 1), months=1, rows_per_month=150_000, seed=5
    )
    run_id = submit(stack, f"{p}__data", big.stem)
    # poll quickly from here on: the kills must land while the run is still working
    stack.wait_for(
        "the run's raw step to start",
        lambda: step_started(stack, run_id, f"{p}__raw"),
        120,
        "daemon",
        "code_server",
        interval=0.1,
    )
    daemon = control.record(stack.config, "daemon")
    assert daemon is not None
    os.killpg(daemon.pid, signal.SIGKILL)
    stack.wait_for("the daemon to die", lambda: not processes.is_running(daemon), 10, interval=0.1)
    pid = worker_pid(stack, run_id)
    assert pid is not None
    run = stack.instance.get_run_by_id(run_id)
    assert run is not None and run.status == dg.DagsterRunStatus.STARTED  # daemon gone, run on
    os.kill(pid, signal.SIGKILL)

    def failed() -> bool:
        run = stack.instance.get_run_by_id(run_id)
        return run is not None and run.status == dg.DagsterRunStatus.FAILURE

    stack.wait_for("the code server to mark the killed run failed", failed, 60, "code_server")
    messages = [e.message or "" for e in stack.instance.all_logs(run_id)]
    assert any("terminated by signal 9" in m for m in messages), messages[-5:]

    control.restart(stack.config, "daemon", timeout=120, base_env=stack.env)

    def retried() -> dg.RunRecord | None:
        children = stack.runs(**{"dagster/parent_run_id": run_id})
        done = [r for r in children if r.dagster_run.is_finished]
        return done[0] if done else None

    retry = stack.wait_for("run retries to re-execute the failed run", retried, 180)
    assert retry.dagster_run.status == dg.DagsterRunStatus.SUCCESS
    assert retry.dagster_run.tags.get("dagster/retry_number") == "1"
    assert retry.dagster_run.tags.get(PROJECT_TAG) == p

    assets = stack.home / "assets" / p
    for asset in ("raw", "features"):
        table = pq.read_table(assets / asset / f"{big.stem}.parquet")
        assert table.num_rows > 140_000
    for path in assets.rglob("*"):
        assert not path.name.endswith(".tmp"), f"left-over temp file {path}"
        if path.suffix == ".parquet":
            pq.read_metadata(path)  # every stored partition is complete Parquet


def test_down_stops_exactly_our_processes(stack: Stack) -> None:
    records = {s: control.record(stack.config, s) for s in PROCESS_SERVICES}
    pg_pid = control.cluster(stack.config).pid()
    assert pg_pid is not None
    pg_ticks = processes.start_ticks(pg_pid)
    stack.instance.dispose()
    stopped = control.down(stack.config, notify=lambda m: None)
    assert set(stopped) == {"postgres", *PROCESS_SERVICES}
    assert stopped["postgres"] == [pg_pid]
    for service, record in records.items():
        assert record is not None and record.pid in stopped[service]
        assert processes.group_members(record) == [], service
    assert control.leftover_pids(stack.config) == {}
    assert not processes.alive(pg_pid, pg_ticks)  # gone (or a zombie init has yet to reap)
    rows = control.status(stack.config, probe=False)
    assert {r.state for r in rows} == {"stopped"}
