"""A local S3-compatible object store for tests: moto's S3 server on a free port, reached by
pyarrow's real S3 client over HTTP (no MinIO binary can be installed here)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

ACCESS = {"AWS_ACCESS_KEY_ID": "mlplatform-test", "AWS_SECRET_ACCESS_KEY": "mlplatform-secret"}


@dataclass(frozen=True)
class ObjectStore:
    endpoint: str  # http://127.0.0.1:PORT

    @property
    def env(self) -> dict[str, str]:
        """What a process needs to reach this store (the standard AWS variables)."""
        return {**ACCESS, "AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL": self.endpoint}

    def filesystem(self) -> object:
        import pyarrow.fs as pafs

        return pafs.S3FileSystem(
            access_key=ACCESS["AWS_ACCESS_KEY_ID"],
            secret_key=ACCESS["AWS_SECRET_ACCESS_KEY"],
            region="us-east-1",
            endpoint_override=self.endpoint,
            allow_bucket_creation=True,
        )

    def create_bucket(self, name: str) -> None:
        self.filesystem().create_dir(name)  # type: ignore[attr-defined]

    def keys(self, prefix: str) -> list[str]:
        """Every object under ``bucket/prefix``."""
        import pyarrow.fs as pafs

        selector = pafs.FileSelector(prefix, recursive=True, allow_not_found=True)
        found = self.filesystem().get_file_info(selector)  # type: ignore[attr-defined]
        return sorted(f.path for f in found if f.type == pafs.FileType.File)


@contextlib.contextmanager
def s3_server() -> Iterator[ObjectStore]:
    """moto's S3 server in a thread of this process, stopped on exit."""
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield ObjectStore(f"http://{host}:{port}")
    finally:
        server.stop()


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
