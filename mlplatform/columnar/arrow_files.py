"""Files handed to Arrow so that no Arrow thread calls into Python after the caller moves on.

Arrow reads in threads of its own. Over a Python file object each read, and the release of
the file itself, calls back into Python; one still pending when the interpreter exits ends the
process with ``terminate called without an active exception`` (exit status 134), after the
command has already reported. Measured here: a CSV reader closed early (a refusal) aborted one
exit in 15, ``pyarrow.parquet.read_table`` over a Python file one in 6, even after a good read.

* ``CsvReader``: the streaming CSV reader over a Python file; ``close`` shuts the file to
  further reads and waits until Arrow has dropped it and every block it read from it.
* ``arrow_buffer``: a whole file read into Arrow's own memory (hashed on the way), for
  readers that take it all anyway: Arrow then holds no Python object at all.
"""

from __future__ import annotations

import io
import threading
import weakref
from collections.abc import Iterator
from typing import IO, TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.csv as pacsv

if TYPE_CHECKING:
    from hashlib import _Hash as Hash

RELEASE_TIMEOUT_S = 30.0
BLOCK = 1 << 22


class _Block(bytearray):
    """A block read for Arrow: a type of our own, so that its release can be watched."""


class _Loans:
    """What Arrow holds of ours: the file, and the blocks read for it (Arrow keeps each one
    until it has parsed it, and releases it, like the file, from a thread of its own)."""

    def __init__(self) -> None:
        self._done = threading.Condition()
        self._held: set[int] = set()
        self._watch: dict[int, weakref.ref[Any]] = {}

    def lend(self, thing: object) -> None:
        key = id(thing)
        with self._done:
            self._held.add(key)
        self._watch[key] = weakref.ref(thing, lambda _: self._returned(key))

    def _returned(self, key: int) -> None:
        self._watch.pop(key, None)
        with self._done:
            self._held.discard(key)
            self._done.notify_all()

    def wait(self, timeout: float) -> None:
        with self._done:
            self._done.wait_for(lambda: not self._held, timeout)


class _Shutter(io.RawIOBase):
    """The file as Arrow sees it: reads go through until ``shut``, then return end of file."""

    def __init__(self, file: IO[bytes], loans: _Loans) -> None:
        self.file: IO[bytes] | None = file
        self.loans = loans

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes | bytearray:
        """Arrow reads through here, block by block, each read straight into a new block."""
        file = self.file
        if file is None:
            return b""
        if size < 0:
            block = _Block(file.read())
        else:
            block = _Block(size)
            got = file.readinto(block)  # type: ignore[attr-defined]
            del block[got or 0 :]
        self.loans.lend(block)
        return block

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def shut(self) -> None:
        self.file = None


class CsvReader:
    """``pyarrow.csv.open_csv`` over ``file`` (a Python binary file); iterate for record
    batches, and ``close`` (or leave the ``with`` block) when done or on any error."""

    def __init__(self, file: IO[bytes], **options: Any) -> None:
        self._loans = _Loans()
        self._file: _Shutter | None = _Shutter(file, self._loans)
        self._loans.lend(self._file)
        self._reader: pacsv.CSVStreamingReader | None = None
        try:
            self._reader = pacsv.open_csv(self._file, **options)
        except BaseException:
            self.close()
            raise
        self.schema: pa.Schema = self._reader.schema

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        while self._reader is not None:
            try:
                batch = self._reader.read_next_batch()
            except StopIteration:
                return
            yield batch

    def close(self) -> None:
        """Stop reading and wait until Arrow holds neither the file nor a block read from it
        (bounded by RELEASE_TIMEOUT_S)."""
        if self._file is None:
            return
        self._file.shut()
        if self._reader is not None:
            self._reader.close()
        self._file = self._reader = None
        self._loans.wait(RELEASE_TIMEOUT_S)

    def __enter__(self) -> CsvReader:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def arrow_buffer(file: IO[bytes], size: int, digest: Hash | None = None) -> pa.Buffer:
    """The rest of ``file`` (``size`` bytes expected) in a buffer Arrow allocated, read block
    by block and fed to ``digest``; shorter when the file ends sooner."""
    buffer = pa.allocate_buffer(size)
    view = memoryview(buffer)
    got = 0
    while got < size:
        n = file.readinto(view[got : got + BLOCK])  # type: ignore[attr-defined]
        if not n:
            break
        if digest is not None:
            digest.update(view[got : got + n])
        got += n
    return buffer.slice(0, got) if got < size else buffer
