"""The serving app through a real PostgreSQL outage: 503 "ledger unavailable: ..." in one line
while the database is down, no tracebacks, and everything works again when it returns.

Needs the PostgreSQL server binaries (Debian: ``apt-get install -y postgresql``).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from mlplatform.serving.app import create_app
from mlplatform.stack.postgres import Cluster
from mlplatform_tests import waiting
from mlplatform_tests.serving.abuse import free_port
from mlplatform_tests.serving.builders import PROJECT, Built
from mlplatform_tests.serving.servers import (
    APPROVER,
    POLL,
    READER,
    TOKENS,
    make_env,
    uvicorn_thread,
)

pytestmark = pytest.mark.e2e
P = f"/v1/projects/{PROJECT}"


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    """A running throwaway cluster with a ``ledger`` database."""
    directory = Path(tempfile.mkdtemp(prefix="outage-pg-"))  # reachable by the postgres user
    pg = Cluster(directory, "127.0.0.1", free_port(), "mlplatform")
    try:
        pg.init()
        pg.start()
        pg.create_databases(["ledger"])
        yield pg
    finally:
        pg.stop()
        shutil.rmtree(directory, ignore_errors=True)


def test_ledger_outage_is_503_and_recovers(
    cluster: Cluster, built: Built, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    password = cluster.password.get_secret_value()
    url = f"postgresql+psycopg2://{cluster.user}:{password}@127.0.0.1:{cluster.port}/ledger"
    env = make_env(built, tmp_path, ledger_url=url, **TOKENS)
    env.ledger.dispose()
    a, b = env.ids["a"], env.ids["b"]
    caplog.set_level(logging.INFO)
    with uvicorn_thread(create_app(env.settings, poll_seconds=POLL)) as base:
        reader = httpx.Client(base_url=base, headers=READER, timeout=30)
        approver = httpx.Client(base_url=base, headers=APPROVER, timeout=30)
        calls = {
            "candidates": lambda: reader.get(f"{P}/candidates"),
            "promotions": lambda: reader.get(f"{P}/promotions"),
            "approve": lambda: approver.post(f"{P}/candidates/{b}/approve", json={"comment": "x"}),
            "reject": lambda: approver.post(f"{P}/candidates/{b}/reject", json={"comment": "y"}),
            "rollback": lambda: approver.post(f"{P}/rollback", json={"reason": "z"}),
        }
        assert calls["candidates"]().status_code == 200

        assert cluster.stop()
        for name, call in calls.items():
            r = call()
            assert r.status_code == 503, (name, r.text)
            detail = r.json()["detail"]
            assert detail.startswith("ledger unavailable: ") and "\n" not in detail, detail
            assert password not in detail
        r = reader.post(f"{P}/predict", json={"rows": env.rows[:3]})
        assert r.status_code == 200 and r.json()["bundle_id"] == a  # still served from memory
        health = waiting.wait_for(
            "/healthz to say degraded",
            lambda: (h := reader.get("/healthz").json())["status"] == "degraded" and h,
            15,
            interval=0.01,
        )
        assert health["projects"][PROJECT]["error"].startswith("ledger unavailable: ")

        cluster.start()
        waiting.wait_for(
            "the ledger to return",
            lambda: calls["candidates"]().status_code == 200,
            15,
            interval=0.01,
        )
        assert calls["approve"]().status_code == 201
        assert calls["promotions"]().json()["production"] == a
        waiting.wait_for(
            "/healthz ok",
            lambda: reader.get("/healthz").json()["status"] == "ok",
            15,
            interval=0.01,
        )
        reader.close()
        approver.close()
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"
    assert "Traceback" not in caplog.text
    messages = [r.getMessage() for r in caplog.records]
    outage_lines = [m for m in messages if "ledger unavailable" in m]
    assert outage_lines and all("\n" not in line for line in outage_lines)
