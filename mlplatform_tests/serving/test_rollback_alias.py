"""A rollback through the API when the MLflow tracking server is down: the ledger moves (the
rollback is instant and audited), the alias is left to the promotion sensor, and the failure is
one logged line, never a 500."""

from __future__ import annotations

import logging
import socket
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from mlplatform.serving.app import create_app
from mlplatform_tests.serving.builders import PROJECT, Built
from mlplatform_tests.serving.servers import APPROVER, TOKENS, make_env


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_rollback_with_mlflow_down_moves_the_ledger_and_logs_the_alias(
    built: Built, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    env = make_env(
        built, tmp_path, mlflow_tracking_uri=f"http://127.0.0.1:{closed_port()}", **TOKENS
    )
    a, b = env.ids["a"], env.ids["b"]
    env.ledger.promote(PROJECT, b, "ci", "second", expected_from=a)
    with caplog.at_level(logging.WARNING), TestClient(create_app(env.settings)) as client:
        r = client.post(
            f"/v1/projects/{PROJECT}/rollback", json={"reason": "drill"}, headers=APPROVER
        )
    assert r.status_code == 201, r.text
    head = env.ledger.production(PROJECT)
    assert head is not None and head.to_bundle == a
    (line,) = [m for m in caplog.messages if "MLflow alias not moved" in m]
    assert "unreachable" in line and "127.0.0.1" not in line
    env.ledger.dispose()
