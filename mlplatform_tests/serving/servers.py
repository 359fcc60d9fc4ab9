"""Serving test helpers: tokens, a platform home with real bundles and ledger, a uvicorn thread."""

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
import uvicorn
from fastapi import FastAPI

from mlplatform.ledger import Ledger
from mlplatform.settings import Settings, load_settings
from mlplatform_tests import waiting
from mlplatform_tests.serving.builders import PROJECT, Built

READER_TOKEN = "reader-secret-6c1f0e"
APPROVER_TOKEN = "approver-secret-93ab47"
READER = {"Authorization": f"Bearer {READER_TOKEN}"}
APPROVER = {"Authorization": f"Bearer {APPROVER_TOKEN}"}
TOKENS = {"reader_tokens": {"rita": READER_TOKEN}, "approver_tokens": {"alice": APPROVER_TOKEN}}
POLL = 0.05


def flip_byte(path: Path) -> Callable[[], None]:
    """Flip one byte in the middle of a file; return a function that flips it back."""
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))

    def restore() -> None:
        data[len(data) // 2] ^= 0x01
        path.write_bytes(bytes(data))

    return restore


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
        waiting.wait_for(
            "uvicorn to start", lambda: uv.started or not thread.is_alive(), 15, interval=0.01
        )
        assert uv.started, "uvicorn did not start"
        yield f"http://127.0.0.1:{port}"
    finally:
        uv.should_exit = True
        thread.join(15)
        sock.close()
        logging.getLogger(__name__).info("uvicorn stopped: %s", not thread.is_alive())
