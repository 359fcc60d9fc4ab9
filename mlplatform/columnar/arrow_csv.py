"""Arrow's streaming CSV reader over a Python file object, let go of before the caller moves on.

Arrow reads ahead in threads of its own, and over a Python file each read calls back into
Python. A read still in flight when the interpreter exits ends the process with ``terminate
called without an active exception`` (exit status 134) after the command has already
reported: every early exit (bad input, an error mid-file) could turn into that crash.
``CsvReader.close`` shuts the file to further reads (they see end of file), closes the reader
and waits until Arrow has dropped the file, so no Arrow thread calls into Python after it.
"""

from __future__ import annotations

import io
import threading
import weakref
from collections.abc import Iterator
from typing import IO, Any

import pyarrow as pa
import pyarrow.csv as pacsv

RELEASE_TIMEOUT_S = 30.0


class _Shutter(io.RawIOBase):
    """The file as Arrow sees it: reads go through until ``shut``, then return end of file."""

    def __init__(self, file: IO[bytes]) -> None:
        self.file: IO[bytes] | None = file

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        """Arrow reads through here: the file's own bytes, no copy in between."""
        file = self.file
        return b"" if file is None else file.read(size)

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
        self._file: _Shutter | None = _Shutter(file)
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
        """Stop reading and wait until Arrow holds the file no more (bounded)."""
        if self._file is None:
            return
        released = threading.Event()
        watch = weakref.ref(self._file, lambda _: released.set())
        self._file.shut()
        if self._reader is not None:
            self._reader.close()
        self._file = self._reader = None
        if watch() is not None:
            released.wait(RELEASE_TIMEOUT_S)

    def __enter__(self) -> CsvReader:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
