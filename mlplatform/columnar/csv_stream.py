"""A CSV landing file as a stream of Arrow record batches of text cells, with file line numbers.

Arrow's streaming CSV reader parses block by block; a tap under it hashes the very bytes it
reads and numbers the file's lines (split at ``\\n``, ``\\r\\n`` or ``\\r``, as Python's csv
module counts them), so each row gets its file line without a Python loop over rows. Only a
few blocks are held at a time. Whatever this reader cannot reproduce exactly (a line break
inside a quoted value, a header that is not the spec's, a ragged row, undecodable text) raises
``NotPlain``: the caller then reads the file with the exact, slower Python reader, which also
words the error.
"""

from __future__ import annotations

import codecs
import io
import queue
import threading
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, BinaryIO, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from mlplatform.columnar.arrow_files import CsvReader
from mlplatform.columns import WHITESPACE

if TYPE_CHECKING:
    from hashlib import _Hash as Hash

BLOCK = 1 << 22
T = TypeVar("T")


class NotPlainError(Exception):
    """The file needs the exact Python reader (the reason is for logs, not users)."""


class TooLargeError(Exception):
    """The file grew past its size limit while it was read."""


class LineTap(io.RawIOBase):
    """Reads the file for Arrow; hashes every byte and records the number of each non-empty
    line (1-based), as ``csv.reader`` counts lines."""

    def __init__(self, fh: BinaryIO, digest: Hash, limit: int):
        self.fh, self.digest, self.limit = fh, digest, limit
        self.offset = 0
        self.line = 1  # number of the line the next byte belongs to
        self.line_start = 0  # offset where that line starts
        self.pending_cr = False  # the last byte read was \r (a \n may follow in the next block)
        self.numbers: list[np.ndarray] = []
        self.eof = False
        self.lock = threading.Lock()  # Arrow reads in a thread of its own
        self.mask = np.empty(0, dtype=bool)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        n = self.fh.readinto(buffer) or 0  # type: ignore[attr-defined]  # no copy in between
        if n == 0:
            self._finish()
            return 0
        data = buffer[:n]
        self.digest.update(data)
        self._count(data)
        self.offset += n
        if self.offset > self.limit:
            raise TooLargeError
        return n

    def _count(self, data: memoryview) -> None:
        """Number the lines that end in this block."""
        base = self.offset
        a = np.frombuffer(data, dtype=np.uint8)
        if len(self.mask) < len(a):
            self.mask = np.empty(len(a), dtype=bool)
        found = self.mask[: len(a)]  # one mask for every block: no fresh pages per block
        if not self.pending_cr and not np.equal(a, 13, out=found).any():
            ends = np.flatnonzero(np.equal(a, 10, out=found)) + base  # \n ends every line
            self._ended(ends, ends)
            return
        lf = a == 10
        cr = a == 13
        after_cr = np.empty(len(a), dtype=bool)  # byte i follows a \r
        after_cr[0] = self.pending_cr
        after_cr[1:] = cr[:-1]
        # a line ends at every \n, and at every \r not followed by \n (decided for the last
        # byte of a block when the next block comes)
        lone_cr = cr.copy()
        lone_cr[:-1] &= ~lf[1:]
        lone_cr[-1] = False
        ends = lf | lone_cr
        if self.pending_cr and not lf[0]:  # the previous block's last \r ended a line
            self._ended(np.array([base - 1]), np.array([base - 1]))
        self.pending_cr = bool(cr[-1])
        positions = np.flatnonzero(ends)
        starts = positions - (lf[positions] & after_cr[positions])  # \r\n starts at its \r
        self._ended(positions + base, starts + base)

    def _ended(self, ends: np.ndarray, term_starts: np.ndarray) -> None:
        """Lines ending at ``ends`` whose terminators start at ``term_starts``."""
        if not len(ends):
            return
        line_starts = np.empty(len(ends), dtype=np.int64)
        line_starts[0] = self.line_start
        line_starts[1:] = ends[:-1] + 1
        numbers = self.line + np.arange(len(ends), dtype=np.int64)
        with self.lock:
            self.numbers.append(numbers[term_starts > line_starts])
        self.line += len(ends)
        self.line_start = int(ends[-1]) + 1

    def _finish(self) -> None:
        if self.eof:
            return
        self.eof = True
        if self.pending_cr:
            self._ended(np.array([self.offset - 1]), np.array([self.offset - 1]))
            self.pending_cr = False
        if self.offset > self.line_start:  # a last line without a line break
            with self.lock:
                self.numbers.append(np.array([self.line], dtype=np.int64))

    def take(self, count: int) -> np.ndarray:
        """The next ``count`` non-empty line numbers."""
        with self.lock:
            have = np.concatenate(self.numbers) if self.numbers else np.empty(0, np.int64)
            if len(have) < count:
                raise NotPlainError("fewer lines than rows")
            self.numbers = [have[count:].copy()]  # copies: a view would keep all of ``have``
            return have[:count].copy()

    def left(self) -> int:
        with self.lock:
            return int(sum(len(x) for x in self.numbers))


DECAY_MS = 100


@contextmanager
def returned_memory() -> Iterator[None]:
    """Arrow allocates from jemalloc with a short decay meanwhile (where the build has it):
    the blocks and per-chunk temporaries freed go back to the system within DECAY_MS instead
    of staying in the allocator's caches, which keeps the peak near what is alive. (With no
    decay at all every chunk's temporaries came from fresh pages: at 1M rows 2.8x the page
    faults, 0.4 s more system time, for the same peak.)"""
    try:
        pool = pa.jemalloc_memory_pool()
        pa.jemalloc_set_decay_ms(DECAY_MS)
    except NotImplementedError:  # a build without jemalloc
        yield
        return
    before = pa.default_memory_pool()
    pa.set_memory_pool(pool)
    try:
        yield
    finally:
        pa.set_memory_pool(before)


def _options(encoding: str, delimiter: str, names: list[str] | None) -> dict[str, object]:
    utf8 = codecs.lookup(encoding).name == "utf-8"
    read = pacsv.ReadOptions(
        block_size=BLOCK, encoding="utf8" if utf8 else encoding, use_threads=True
    )
    parse = pacsv.ParseOptions(
        delimiter=delimiter, quote_char='"', double_quote=True, escape_char=False,
        newlines_in_values=True, ignore_empty_lines=True,
    )  # fmt: skip
    types = {name: pa.string() for name in names} if names is not None else {}
    convert = pacsv.ConvertOptions(
        column_types=types, strings_can_be_null=False, quoted_strings_can_be_null=False,
        check_utf8=True,
    )  # fmt: skip
    return {"read_options": read, "parse_options": parse, "convert_options": convert}


def header(fh: BinaryIO, encoding: str, delimiter: str) -> list[str]:
    """The header's column names as Arrow reads them, from a copy of the file's first block
    (Arrow reads ahead in threads of its own); the file is left at its start."""
    first = fh.read(BLOCK)
    fh.seek(0)
    if len(first) == BLOCK:  # keep whole lines only
        cut = max(first.rfind(b"\n"), first.rfind(b"\r"))
        if cut < 0:
            raise NotPlainError("no line break in the first block")
        first = first[: cut + 1]
    try:
        with CsvReader(io.BytesIO(first), **_options(encoding, delimiter, None)) as reader:
            names = list(reader.schema.names)
    except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
        raise NotPlainError(str(exc)) from None
    return names


def batches(
    fh: BinaryIO, digest: Hash, encoding: str, delimiter: str, names: list[str], limit: int
) -> Generator[tuple[pa.RecordBatch, np.ndarray], None, None]:
    """Record batches of text cells and the file line of each row; blank rows (every cell
    empty after trimming) are dropped, as the Python reader skips them. Read one batch ahead
    (``read_ahead``): Arrow parses the next block while the caller judges this one."""
    return read_ahead(_batches(fh, digest, encoding, delimiter, names, limit))


def read_ahead(items: Iterator[T]) -> Generator[T, None, None]:
    """``items``, produced in a thread of their own at most two ahead of the caller; what the
    producer raises is raised here. When the caller stops early the producer stops too, and
    has ended before this generator returns (the file it reads may then be closed)."""
    ahead: queue.Queue[tuple[T | None, BaseException | None, bool]] = queue.Queue(maxsize=1)
    stop = threading.Event()

    def put(entry: tuple[T | None, BaseException | None, bool]) -> bool:
        while not stop.is_set():
            try:
                ahead.put(entry, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put((item, None, False)):
                    return
            put((None, None, True))
        except BaseException as exc:  # handed to the caller, raised there
            put((None, exc, True))
        finally:  # a generator's own cleanup (closing its reader) runs before the join
            close = getattr(items, "close", None)
            if close is not None:
                close()

    producer = threading.Thread(target=produce, name="csv-read-ahead", daemon=True)
    producer.start()
    try:
        while True:
            item, error, done = ahead.get()
            if error is not None:
                raise error
            if done:
                return
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        producer.join()


def _batches(
    fh: BinaryIO, digest: Hash, encoding: str, delimiter: str, names: list[str], limit: int
) -> Iterator[tuple[pa.RecordBatch, np.ndarray]]:
    tap = LineTap(fh, digest, limit)
    stream = io.BufferedReader(tap, buffer_size=BLOCK)
    try:
        with CsvReader(stream, **_options(encoding, delimiter, names)) as reader:
            tap.take(1)  # the header's line
            for batch in reader:
                if not batch.num_rows:
                    continue
                lines = tap.take(batch.num_rows)
                blank = _blank_rows(batch)
                if blank is not None:
                    keep = pa.array(~blank)
                    batch, lines = batch.filter(keep), lines[~blank]
                yield batch, lines
        stream.read()  # to the end: every byte hashed
    except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
        raise NotPlainError(str(exc)) from None
    if tap.left():  # more non-empty lines than rows: a line break inside a quoted value
        raise NotPlainError("line breaks inside values")


def _blank_rows(batch: pa.RecordBatch) -> np.ndarray | None:
    """Rows whose every cell is empty after trimming; None when there are none."""
    blank = None
    for column in batch.columns:
        empty = pc.equal(pc.binary_length(pc.utf8_trim(column, characters=WHITESPACE)), 0)
        blank = empty if blank is None else pc.and_(blank, empty)
        if not pc.any(blank).as_py():
            return None
    return np.asarray(blank.to_numpy(zero_copy_only=False), dtype=bool)  # type: ignore[union-attr]
