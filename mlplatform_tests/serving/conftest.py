"""Serving fixtures: real bundles (built once), a real ledger per test, one real uvicorn server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from mlplatform.serving.app import create_app
from mlplatform_tests.serving.builders import Built, build
from mlplatform_tests.serving.servers import POLL, TOKENS, Env, Server, make_env, uvicorn_thread


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    """Specs of ``shop`` and ``other`` and three published ``shop`` bundles a, b, c."""
    return build(tmp_path_factory.mktemp("serving-build"))


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


@pytest.fixture(scope="session")
def server(built: Built, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    env = make_env(built, tmp_path_factory.mktemp("served"), **TOKENS)
    app = create_app(env.settings, poll_seconds=POLL)
    try:
        with uvicorn_thread(app) as url:
            yield Server(url, env, app)
    finally:
        env.ledger.dispose()
