"""The MLflow alias ``production`` follows the ledger head: racing CLI rollbacks (real
processes, ``rollback --to A`` ‖ ``rollback --to B``) on SQLite and on PostgreSQL, and a
rollback through the serving API with MLflow behind a real tracking server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
from fastapi.testclient import TestClient

from mlplatform.ledger import Ledger
from mlplatform.registry_rest import RestRegistry
from mlplatform.resources.mlflow import MlflowTracking
from mlplatform.serving.app import create_app
from mlplatform.stack.services import executable
from mlplatform_tests import waiting
from mlplatform_tests.e2e.test_ledger_postgres import free_port, postgres  # noqa: F401
from mlplatform_tests.projects import Trained

RACERS = 16
CLI = [sys.executable, "-m", "mlplatform.cli"]


def a_then_b(t: Trained, ledger_url: str) -> MlflowTracking:
    """Bundles A then B promoted (ledger and alias); returns the MLflow resource."""
    project, (a, b) = t.project, t.bundles
    p, s = project.spec.name, project.settings
    mlflow = MlflowTracking(tracking_uri=s.tracking_uri, artifact_root=str(s.mlflow_artifacts_dir))
    with Ledger(ledger_url) as ledger:
        ledger.promote(p, a, "bob", "first", expected_from=None)
        ledger.promote(p, b, "bob", "second", expected_from=a)
    mlflow.set_production_alias(p, b)
    return mlflow


def race_rollbacks(t: Trained, ledger_url: str) -> tuple[str, str | None, list[str]]:
    """A then B promoted, then RACERS rollbacks to A and B alternately, all at once; returns
    (ledger head, alias, outputs)."""
    project, (a, b) = t.project, t.bundles
    p, s = project.spec.name, project.settings
    mlflow = a_then_b(t, ledger_url)
    env = {**os.environ, "MLPLATFORM_LEDGER_URL": ledger_url}
    racers = [
        subprocess.Popen(
            [
                *CLI,
                "rollback",
                p,
                "--to",
                (a, b)[i % 2],
                "--home",
                str(project.home),
                "--projects",
                str(s.projects_dir),
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(RACERS)
    ]
    outputs = []
    for proc in racers:
        out, _ = proc.communicate(timeout=300)
        outputs.append(f"rc={proc.returncode} {out.strip()}")
    with Ledger(ledger_url) as ledger:
        head = ledger.production(p)
        rows = ledger.history(p)
    assert head is not None
    assert len(rows) >= 3, outputs  # at least one racer rolled back
    return head.to_bundle, mlflow.production_alias(p), outputs


def check(outputs: list[str]) -> None:
    for out in outputs:
        assert "Traceback" not in out, out
        assert out.startswith("rc=0 ") or "rollback refused" in out, out


def test_racing_cli_rollbacks_leave_head_equal_alias(two_bundles: Trained) -> None:
    head, alias, outputs = race_rollbacks(two_bundles, two_bundles.project.settings.ledger)
    check(outputs)
    assert head == alias, "\n".join(outputs)


def test_racing_cli_rollbacks_on_postgres(two_bundles: Trained, postgres: str) -> None:  # noqa: F811
    head, alias, outputs = race_rollbacks(two_bundles, postgres)
    check(outputs)
    assert head == alias, "\n".join(outputs)


def test_api_rollback_moves_the_alias_on_a_tracking_server(
    two_bundles: Trained, tmp_path: Path
) -> None:
    """The serving process has no mlflow: it moves the alias over the tracking server's REST
    API, from the ledger head read after its compare-and-swap."""
    project, (a, _) = two_bundles.project, two_bundles.bundles
    p, s = project.spec.name, project.settings
    mlflow = a_then_b(two_bundles, s.ledger)
    port, log = free_port(), tmp_path / "mlflow.log"
    argv = [executable("mlflow"), "server", "--backend-store-uri", s.tracking_uri]
    argv += ["--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    with log.open("w") as out:
        server = subprocess.Popen(
            argv,
            env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        try:
            return httpx.get(f"{url}/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        waiting.wait_for("mlflow server", healthy, 120, details=lambda: log.read_text()[-2000:])
        settings = s.model_copy(
            update={"mlflow_tracking_uri": url, "approver_tokens": {"bob": "bob-secret"}}
        )
        with TestClient(create_app(settings)) as client:
            r = client.post(
                f"/v1/projects/{p}/rollback",
                json={"to_bundle": a, "reason": "drill"},
                headers={"Authorization": "Bearer bob-secret"},
            )
        assert r.status_code == 201, r.text
        registry = RestRegistry(url)  # the serving process reads the alias back the same way
        assert registry.production_alias(p) == a
        assert registry.production_alias("no-such-project") is None
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    with Ledger(s.ledger) as ledger:
        head = ledger.production(p)
    assert head is not None and head.to_bundle == a == mlflow.production_alias(p)
