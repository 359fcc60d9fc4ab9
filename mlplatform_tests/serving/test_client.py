"""The client over real HTTP: ETag caching, verified pulls into a cache, in-process predict."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pandas as pd
import pytest

from mlplatform.serving.client import Client, ClientError
from mlplatform_tests.serving.builders import OTHER_PROJECT, PROJECT
from mlplatform_tests.serving.servers import READER, READER_TOKEN, Server, flip_byte


class Recording(httpx.HTTPTransport):
    """A real transport that remembers (method, path, status) of every exchange."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, str, int]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        self.seen.append((request.method, request.url.path, response.status_code))
        return response


def bundle_dirs(cache: Path) -> list[str]:
    return sorted(p.name for p in cache.iterdir() if not p.name.startswith("."))


def test_pull_verifies_caches_and_predicts_like_the_server(server: Server, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    production = server.served()
    assert production is not None
    transport = Recording()
    with Client(server.base_url, READER_TOKEN, cache, transport=transport) as client:
        bundle = client.pull(PROJECT)
        assert bundle.bundle_id == production
        assert bundle.path == cache / production
        assert bundle_dirs(cache) == [production]
        downloads = [p for _, p, _ in transport.seen if "/files/" in p]
        assert len(downloads) == len(bundle.manifest["files"]) + 1  # + manifest.json
        rows = server.env.rows[:40]
        with server.http() as http:
            remote = http.post(f"/v1/projects/{PROJECT}/predict", json={"rows": rows}).json()
        local = client.predict(PROJECT, rows)
        assert remote["bundle_id"] == production
        assert [p["label"] for p in local] == [p["label"] for p in remote["predictions"]]
        for mine, theirs in zip(local, remote["predictions"], strict=True):
            assert mine["probabilities"] == pytest.approx(theirs["probabilities"], abs=1e-12)
        frame = pd.DataFrame(rows).drop(columns=["plan"])  # a missing column counts as missing
        assert client.predict(PROJECT, frame) == client.predict(
            PROJECT, [{k: v for k, v in r.items() if k != "plan"} for r in rows]
        )
        transport.seen.clear()
        assert client.pull(PROJECT) is bundle  # unchanged: one conditional GET, nothing else
        assert transport.seen == [("GET", f"/v1/projects/{PROJECT}/production", 304)]
    # A new client (new process, say) revalidates from the on-disk ETag cache.
    transport = Recording()
    with Client(server.base_url, READER_TOKEN, cache, transport=transport) as again:
        assert again.pull(PROJECT).bundle_id == production
    assert transport.seen == [("GET", f"/v1/projects/{PROJECT}/production", 304)]


def test_tampered_download_is_refused_and_leaves_nothing(server: Server, tmp_path: Path) -> None:
    production = server.served()
    assert production is not None
    served_file = next((server.env.settings.bundles_dir / production).rglob("model.onnx"))
    restore = flip_byte(served_file)
    cache = tmp_path / "cache"
    try:
        with Client(server.base_url, READER_TOKEN, cache) as client:
            # The server refuses to send the altered file (409); the client would refuse it too.
            with pytest.raises(ClientError, match=r"HTTP 409: .*sha256 mismatch") as refused:
                client.pull(PROJECT)
            assert refused.value.status == 409
            assert bundle_dirs(cache) == []
            assert not [p for p in cache.iterdir() if p.name != ".production"]
    finally:
        restore()
    with Client(server.base_url, READER_TOKEN, cache) as client:
        assert client.pull(PROJECT).bundle_id == production  # the fixed file is accepted


def test_a_corrupted_cache_is_downloaded_again(server: Server, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    with Client(server.base_url, READER_TOKEN, cache) as client:
        bundle = client.pull(PROJECT)
    flip_byte(next(bundle.path.rglob("model.onnx")))
    transport = Recording()
    with Client(server.base_url, READER_TOKEN, cache, transport=transport) as client:
        assert client.pull(PROJECT).bundle_id == bundle.bundle_id
    assert any("/files/" in p for _, p, _ in transport.seen)


def test_client_errors_name_the_problem(server: Server, tmp_path: Path) -> None:
    with Client(server.base_url, "wrong-token", tmp_path) as client:
        with pytest.raises(ClientError) as info:
            client.pull(PROJECT)
        assert info.value.status == 401
    with Client(server.base_url, READER_TOKEN, tmp_path) as client:
        with pytest.raises(ClientError, match=OTHER_PROJECT) as info:
            client.pull(OTHER_PROJECT)
        assert info.value.status == 404
    with pytest.raises(OSError):  # ClientError is an OSError, like urllib's URLError
        Client("http://127.0.0.1:9", READER_TOKEN, tmp_path).pull(PROJECT)
    assert READER["Authorization"].endswith(READER_TOKEN)


def test_client_imports_no_server_or_training_stack() -> None:
    code = (
        "import sys, mlplatform.serving.client\n"
        "bad = [m for m in ('fastapi', 'uvicorn', 'prometheus_client', 'pandas', 'sqlalchemy',"
        " 'dagster', 'sklearn', 'mlflow', 'torch') if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""
