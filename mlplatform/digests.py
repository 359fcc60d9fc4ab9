"""Content digests: a landing file's sha256 is the data version of its ``raw`` partition."""

import hashlib
from pathlib import Path
from typing import BinaryIO


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes, read in 1 MiB chunks."""
    with path.open("rb") as fh:
        return stream_sha256(fh)


def stream_sha256(fh: BinaryIO) -> str:
    """sha256 of what is left to read of an open binary file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    for chunk in iter(lambda: fh.read(1 << 20), b""):
        h.update(chunk)
    return h.hexdigest()
