"""Serving fixtures: real bundles (built once), a real ledger per test, one real uvicorn server."""

from __future__ import annotations

import logging
import shutil
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient

from mlplatform.ledger import Ledger
from mlplatform.serving.app import create_app
from mlplatform.settings import Settings, load_settings
from mlplatform_tests import waiting
from mlplatform_tests.serving.builders import PROJECT, Built, build

READER_TOKEN = "reader-secret-6c1f0e"
APPROVER_TOKEN = "approver-secret-93ab47"
READER = {"Authorization": f"Bearer {READER_TOKEN}"}
APPROVER = {"Authorization": f"Bearer {APPROVER_TOKEN}"}
TOKENS = {"reader_tokens": {"rita": READER_TOKEN}, "approver_tokens": {"alice": APPROVER_TOKEN}}
POLL = 0.05


def wait_for(condition: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> Any:
    """Poll until ``condition()`` is truthy (returned) or fail after ``timeout`` seconds."""
    return waiting.wait_for(what, condition, timeout, interval=0.01)


def flip_byte(path: Path) -> Callable[[], None]:
    """Flip one byte in the middle of a file; return a function that flips it back."""
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))

    def restore() -> None:
        data[len(data) // 2] ^= 0x01
        path.write_bytes(bytes(data))

    return restore


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    """Specs of ``shop`` and ``other`` and three published ``shop`` bundles a, b, c."""
    return build(tmp_path_factory.mktemp("serving-build"))


@dataclass
class Env:
    """A platform home with the built bundles, a ledger where ``a`` is production."""

    settings: Settings
    ledger: Ledger
    ids: dict[str, str]
    rows: list[dict[str, Any]]

    def bundle_dir(self, key: str) -> Path:
        return self.settings.bundles_dir / self.ids[key]


def make_env(built: Built, root: Path, **options: Any) -> Env:
    home = root / "home"
    home.mkdir(parents=True)
    shutil.copytree(built.bundles_dir, home / "bundles")
    settings = load_settings(home=home, projects_dir=built.projects_dir, **options)
    env = Env(settings, Ledger(settings.ledger), dict(built.bundles), built.rows)
    env.ledger.promote(PROJECT, env.ids["a"], "ci", "first production", expected_from=None)
    return env


@pytest.fixture
def env(built: Built, tmp_path: Path) -> Iterator[Env]:
    e = make_env(built, tmp_path, **TOKENS)
    yield e
    e.ledger.dispose()


@pytest.fixture
def app(env: Env) -> FastAPI:
    return create_app(env.settings, poll_seconds=POLL)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as c:  # runs the lifespan: initial load + watcher thread
        yield c


@dataclass
class Server:
    """One real uvicorn server on a free port (shared by the tests that need real HTTP)."""

    base_url: str
    env: Env
    app: FastAPI

    def http(self, headers: dict[str, str] | None = None) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, headers=headers or READER, timeout=30)

    def served(self) -> str | None:
        with self.http() as h:
            r = h.get(f"/v1/projects/{PROJECT}/production")
        return r.json()["bundle_id"] if r.status_code == 200 else None


@contextmanager
def uvicorn_thread(app: FastAPI) -> Iterator[str]:
    """Run ``app`` on a real uvicorn server in a thread on a free port; yield its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_config=None, lifespan="on", timeout_graceful_shutdown=5)
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=uv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        wait_for(lambda: uv.started or not thread.is_alive(), what="uvicorn to start")
        assert uv.started, "uvicorn did not start"
        yield f"http://127.0.0.1:{port}"
    finally:
        uv.should_exit = True
        thread.join(15)
        sock.close()
        logging.getLogger(__name__).info("uvicorn stopped: %s", not thread.is_alive())


@pytest.fixture(scope="session")
def server(built: Built, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    env = make_env(built, tmp_path_factory.mktemp("served"), **TOKENS)
    app = create_app(env.settings, poll_seconds=POLL)
    try:
        with uvicorn_thread(app) as url:
            yield Server(url, env, app)
    finally:
        env.ledger.dispose()
