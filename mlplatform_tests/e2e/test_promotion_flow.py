"""The whole promotion story across processes: train -> bundle -> approval over HTTP ->
promotion sensor -> production moved (ledger + MLflow alias) -> a running server swaps ->
the client pulls it and predicts like the bundle -> CLI rollback."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import httpx
import pytest

from mlplatform.bundles.format import load
from mlplatform.ledger import Ledger
from mlplatform.resources.mlflow import MlflowTracking
from mlplatform.serving.client import Client
from mlplatform.steps.ingest import read_landing_file
from mlplatform_tests import waiting
from mlplatform_tests.projects import Project, Trained, production_job

CLI = [sys.executable, "-m", "mlplatform.cli"]
TOKENS = {
    "MLPLATFORM_APPROVER_TOKENS": json.dumps({"bob": "bob-secret"}),
    "MLPLATFORM_READER_TOKENS": json.dumps({"app": "app-secret"}),
}


def until(what: str, check: Callable[[], Any], seconds: float = 60) -> Any:
    return waiting.wait_for(what, check, seconds)


@pytest.fixture
def trained(two_bundles: Trained) -> tuple:
    t = two_bundles
    return t.project, t.defs, t.instance, t.bundles


@pytest.fixture
def server(trained: tuple) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    project = trained[0]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, **TOKENS}
    proc = subprocess.Popen(
        [
            *CLI,
            "serve",
            "--port",
            str(port),
            "--home",
            str(project.home),
            "--projects",
            str(project.settings.projects_dir),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        try:
            return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        until("mlplatform serve to answer", healthy, 60)
        yield url, proc
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def sensor_promotes(
    defs: dg.Definitions, instance: dg.DagsterInstance, p: str, cursor: str | None
) -> str | None:
    """One promotion-sensor tick; its run requests executed as the daemon would."""
    sensor = defs.get_sensor_def(f"{p}__promotion")
    with dg.build_sensor_context(
        instance=instance, cursor=cursor, definitions=defs, resources=defs.resources
    ) as context:
        result = sensor(context)
    resolved = production_job(defs, p)
    for request in result.run_requests:
        outcome = resolved.execute_in_process(
            instance=instance, run_config=request.run_config, tags=request.tags
        )
        assert outcome.success
    return result.cursor


def cli(project: Project, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            *CLI,
            *args,
            "--home",
            str(project.home),
            "--projects",
            str(project.settings.projects_dir),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_approve_promote_serve_pull_rollback(trained: tuple, server: tuple, tmp_path: Path) -> None:
    project, defs, instance, (first, second) = trained
    url, _ = server
    p = project.spec.name
    ledger = Ledger(project.settings.ledger)
    mlflow = MlflowTracking(
        tracking_uri=project.settings.tracking_uri,
        artifact_root=str(project.settings.mlflow_artifacts_dir),
    )
    reader = {"Authorization": "Bearer app-secret"}
    approver = {"Authorization": "Bearer bob-secret"}
    cursor = sensor_promotes(defs, instance, p, None)
    assert httpx.get(f"{url}/v1/projects/{p}/production", headers=reader).status_code == 404

    # a reader cannot approve; nothing is recorded
    r = httpx.post(
        f"{url}/v1/projects/{p}/candidates/{first}/approve", headers=reader, json={"comment": "x"}
    )
    assert r.status_code == 403 and ledger.decisions(p) == []

    for bundle in (first, second):
        r = httpx.post(
            f"{url}/v1/projects/{p}/candidates/{bundle}/approve",
            headers=approver,
            json={"comment": "good slices"},
        )
        assert r.status_code in (200, 201), r.text
        cursor = sensor_promotes(defs, instance, p, cursor)
        assert ledger.production(p).to_bundle == bundle == mlflow.production_alias(p)
        until(
            "the server to swap",
            lambda b=bundle: (
                httpx.get(f"{url}/v1/projects/{p}/production", headers=reader)
                .json()
                .get("bundle_id")
                == b
            ),
        )

    pulled = subprocess.run(
        [*CLI, "pull", p, "--url", url, "--cache", str(tmp_path / "cli-cache")],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "MLPLATFORM_TOKEN": "app-secret"},
    )
    assert pulled.returncode == 0, pulled.stderr
    assert second in pulled.stdout and (tmp_path / "cli-cache" / second).is_dir()
    client = Client(url, token="app-secret", cache_dir=tmp_path / "cache")
    bundle = client.pull(p)
    assert bundle.bundle_id == second
    rows = read_landing_file(project.files[-1], project.spec).head(50).to_dict("records")
    expected = load(project.home / "bundles" / second).predict_rows(rows)
    got = [client.predict(p, [row])[0] for row in rows]
    for a, b in zip(got, expected, strict=True):
        assert a["label"] == b["label"]
        assert a["probabilities"] == pytest.approx(b["probabilities"], abs=1e-6)

    listing = cli(project, "candidates", p)
    assert listing.returncode == 0 and second[:12] in listing.stdout
    assert "production" in listing.stdout and "approved by bob" in listing.stdout

    rolled = cli(project, "rollback", p, "-m", "calibration drifted")
    assert rolled.returncode == 0, rolled.stderr
    assert ledger.production(p).to_bundle == first == mlflow.production_alias(p)
    assert ledger.history(p)[-1].kind == "rollback"
    until(
        "the server to swap back",
        lambda: (
            httpx.get(f"{url}/v1/projects/{p}/production", headers=reader).json().get("bundle_id")
            == first
        ),
    )
    history = cli(project, "promotions", p)
    assert history.returncode == 0 and "rollback" in history.stdout
    assert "calibration drifted" in history.stdout

    never = cli(project, "rollback", p, "--to", "ffff")
    assert never.returncode != 0
