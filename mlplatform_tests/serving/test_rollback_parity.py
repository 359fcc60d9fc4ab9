"""CLI and API rollbacks (and decisions) are one code path (``promotion.service``): on twin
homes, the same requests give the same refusals, the same ledger rows and the same MLflow alias."""

from __future__ import annotations

import os
import pwd
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from mlplatform.resources.mlflow import MlflowTracking
from mlplatform.serving.app import create_app
from mlplatform_tests.serving.builders import PROJECT, Built
from mlplatform_tests.serving.conftest import Env, make_env

pytestmark = pytest.mark.e2e  # real CLI processes, a real MLflow registry
ME = pwd.getpwuid(os.getuid()).pw_name  # the CLI acts as the system account ...
TOKEN = "approver-secret-5d0c11"  # ... and the API as the owner of this token: the same name
P = f"/v1/projects/{PROJECT}"


def mlflow_of(env: Env) -> MlflowTracking:
    s = env.settings
    return MlflowTracking(tracking_uri=s.tracking_uri, artifact_root=str(s.mlflow_artifacts_dir))


def cli(env: Env, *args: str) -> subprocess.CompletedProcess[str]:
    """``mlplatform <args>`` as a real process on the env's home."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MLPLATFORM_")}
    return subprocess.run(
        [sys.executable, "-m", "mlplatform.cli", *args],
        env={
            **clean,
            "MLPLATFORM_HOME": str(env.settings.home),
            "MLPLATFORM_PROJECTS_DIR": str(env.settings.projects_dir),
        },
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture
def twins(built: Built, tmp_path: Path) -> Iterator[tuple[Env, Env]]:
    """Two homes with the same bundles and ledger (``a`` production); the second serves an
    approver token owned by the system account, and moves the alias in the same registry."""
    by_cli = make_env(built, tmp_path / "cli")
    by_api = make_env(built, tmp_path / "api", approver_tokens={ME: TOKEN})
    try:
        yield by_cli, by_api
    finally:
        by_cli.ledger.dispose()
        by_api.ledger.dispose()


def row_of(env: Env) -> tuple[Any, ...]:
    last = env.ledger.history(PROJECT)[-1]
    return (last.seq, last.kind, last.from_bundle, last.to_bundle, last.actor, last.reason)


def test_cli_and_api_rollbacks_refuse_and_move_alike(twins: tuple[Env, Env]) -> None:
    by_cli, by_api = twins
    a, b, c = (by_cli.ids[k] for k in "abc")
    app = create_app(by_api.settings, registry=mlflow_of(by_api))
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with TestClient(app) as api:

        def both(to: str | None, reason: str) -> tuple[subprocess.CompletedProcess[str], Any]:
            args = ["-m", reason] + (["--to", to] if to else [])
            body = {"reason": reason} | ({"to_bundle": to} if to else {})
            return cli(by_cli, "rollback", PROJECT, *args), api.post(
                f"{P}/rollback", json=body, headers=headers
            )

        # refusals: one reason, worded alike, and nothing written on either side
        for to in (None, b):  # no previous bundle; never production
            ran, http = both(to, "drill")
            assert ran.returncode == 1 and http.status_code == 400, (ran.stderr, http.text)
            assert http.json()["detail"] in ran.stderr, (ran.stderr, http.text)
        for env in twins:
            env.ledger.promote(PROJECT, b, "ci", "second production", expected_from=a)
        for to in (b, c):  # already production; never production
            ran, http = both(to, "drill")
            assert ran.returncode == 1 and http.status_code == 400, (ran.stderr, http.text)
            assert http.json()["detail"] in ran.stderr, (ran.stderr, http.text)
        assert row_of(by_cli) == row_of(by_api) == (2, "promote", a, b, "ci", "second production")

        # the rollback itself: the same row and the same alias (registered on the way)
        ran, http = both(None, "calibration drifted")
        assert ran.returncode == 0, ran.stderr
        assert http.status_code == 201, http.text
    assert row_of(by_cli) == row_of(by_api) == (3, "rollback", b, a, ME, "calibration drifted")
    aliases = [mlflow_of(env).production_alias(PROJECT) for env in twins]
    versions = [mlflow_of(env).version_of_bundle(PROJECT, a) for env in twins]
    assert aliases == [a, a] and versions[0] == versions[1] is not None


def test_cli_and_api_refuse_a_decision_on_production_alike(twins: tuple[Env, Env]) -> None:
    by_cli, by_api = twins
    a = by_cli.ids["a"]
    with TestClient(create_app(by_api.settings)) as api:
        http = api.post(
            f"{P}/candidates/{a}/approve", json={}, headers={"Authorization": f"Bearer {TOKEN}"}
        )
    ran = cli(by_cli, "approve", PROJECT, a[:12])
    assert http.status_code == 409 and ran.returncode == 1, (http.text, ran.stdout)
    assert http.json()["detail"] in ran.stderr, (ran.stderr, http.text)
    assert by_cli.ledger.decisions(PROJECT) == by_api.ledger.decisions(PROJECT) == []
