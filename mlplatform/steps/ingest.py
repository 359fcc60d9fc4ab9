"""Read one landing file and judge its quality against the spec.

``ingest_landing`` streams a CSV file through Arrow (``columnar.csv_stream``,
``columnar.kernels``) and adds up each chunk's quality in a ``PartitionTally``; the exact
Python reader (``read_landing``) reads what the stream cannot reproduce and words every refusal, and
``parse_partition`` judges an already-read frame with the same tally (``partition_quality``)."""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import os
from array import array
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from mlplatform.columnar import csv_stream
from mlplatform.columnar.arrow_files import arrow_buffer
from mlplatform.landing import MB, LandingRefusedError, open_landing_file, shown
from mlplatform.spec import ProjectSpec
from mlplatform.steps.partition_quality import PartitionTally, QualityReport

if TYPE_CHECKING:
    from _csv import Reader
    from hashlib import _Hash as Hash


class DataError(Exception):
    """A landing file that cannot be used at all; the message names file, column, row, reason."""

    def __init__(self, file: Path, reason: str, column: str | None = None, rows: str = ""):
        self.file, self.reason, self.column, self.rows = file, reason, column, rows
        where = f" column {column!r}:" if column else ""
        at = f" ({rows})" if rows else ""
        super().__init__(f"{shown(file)}:{where} {reason}{at}")


BLOCK = 1 << 20


def _text_lines(fh: BinaryIO, path: Path, spec: ProjectSpec, digest: Hash) -> Iterator[str]:
    """Lines of a CSV file as ``open(newline="")`` yields them (ends kept; split at \\n, \\r\\n
    or \\r), decoded block by block, each block also fed to ``digest``: only one block and one
    line are held at a time."""
    encoding = spec.data.encoding
    if codecs.lookup(encoding).name == "utf-8":
        encoding = "utf-8-sig"  # tolerate a byte-order mark
    decoder = codecs.getincrementaldecoder(encoding)()
    limit = spec.data.max_file_mb * MB
    offset = newlines = 0
    pending: list[str] = []
    while True:
        block = fh.read(BLOCK)
        digest.update(block)
        try:
            text = decoder.decode(block, final=not block)
        except UnicodeDecodeError as exc:
            data = exc.object
            carried = len(data) - len(block)  # undecoded bytes of the previous block
            line = newlines - data[:carried].count(b"\n") + data[: exc.start].count(b"\n") + 1
            raise DataError(
                path,
                f"not valid {spec.data.encoding} text at byte {offset - carried + exc.start}; "
                "set data.encoding in the spec (e.g. latin-1)",
                rows=f"line {line}",
            ) from None
        offset += len(block)
        newlines += block.count(b"\n")
        if offset > limit:  # grew after it was checked
            raise DataError(
                path, f"grew past data.max_file_mb={spec.data.max_file_mb} while it was read"
            )
        if "\n" not in text and "\r" not in text and block:
            pending.append(text)
            continue
        lines = io.StringIO("".join(pending) + text, newline="").readlines()
        pending = []
        if block and lines and (lines[-1].endswith("\r") or not lines[-1].endswith("\n")):
            pending.append(lines.pop())  # the rest of it (or its \n) is in the next block
        yield from lines
        if not block:
            return


def _read_csv(fh: BinaryIO, path: Path, spec: ProjectSpec, digest: Hash) -> pd.DataFrame:
    """Cells as strings, indexed by file line number; blank lines skipped, ragged rows refused."""
    lines = _text_lines(fh, path, spec, digest)
    frame, _ = csv_frame(csv.reader(lines, delimiter=spec.data.delimiter), path)
    return frame


CHUNK_ROWS = 1 << 16


def csv_frame(reader: Reader, path: Path, limit: int | None = None) -> tuple[pd.DataFrame, bool]:
    """Header and rows of a ``csv.reader`` as strings indexed by file line number (blank lines
    skipped, ragged rows refused), up to ``limit`` rows; and whether the file was read to its
    end. Rows are packed into object arrays every CHUNK_ROWS rows: no list per row is kept."""
    header: list[str] | None = None
    chunk: list[list[str]] = []
    blocks: list[np.ndarray] = []
    lines = array("q")
    complete = True
    try:
        for row in reader:
            if not any(map(str.strip, row)):
                continue
            if header is None:
                header = row
                continue
            if limit is not None and len(lines) == limit:
                complete = False
                break
            if len(row) != len(header):
                raise DataError(
                    path,
                    f"malformed CSV: {len(row)} fields where the header has {len(header)}",
                    rows=f"line {reader.line_num}",
                )
            chunk.append(row)
            lines.append(reader.line_num)
            if len(chunk) == CHUNK_ROWS:
                blocks.append(np.array(chunk, dtype=object))
                chunk = []
    except csv.Error as exc:
        raise DataError(path, f"malformed CSV: {exc}", rows=f"line {reader.line_num}") from None
    if header is None:
        raise DataError(path, "empty file: no header and no rows")
    blocks.append(np.array(chunk, dtype=object).reshape(len(chunk), len(header)))
    cells = blocks[0] if len(blocks) == 1 else np.concatenate(blocks)
    del blocks
    frame = pd.DataFrame(cells, columns=header, dtype=object)
    frame.index = pd.Index(np.asarray(lines, dtype=np.int64), name="line")
    return frame, complete


def _read_parquet(fh: BinaryIO, path: Path, digest: Hash) -> pd.DataFrame:
    data = arrow_buffer(fh, os.fstat(fh.fileno()).st_size, digest)
    try:
        table = pq.read_table(pa.BufferReader(data))
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(
            path, f"not a readable Parquet file (truncated or corrupt): {exc}"
        ) from None
    frame = table.to_pandas().astype(object)
    frame.index = pd.RangeIndex(1, len(frame) + 1, name="row")
    return frame


def read_landing_file(path: Path, spec: ProjectSpec) -> pd.DataFrame:
    """Raw cells of one landing file (strings for CSV), with the spec's columns in order.

    Raises DataError for what no cleaning can fix: a missing, empty, undecodable or corrupt
    file, a header with no rows, missing, extra or repeated columns; and for a file that is
    not a landing file at all (too large, not a regular file, a link out of the folder).
    """
    return read_landing(path, spec)[0]


@contextmanager
def opened_landing(path: Path, spec: ProjectSpec) -> Iterator[BinaryIO]:
    """The landing file, open for reading, or a DataError: refused before reading (too large,
    not a regular file, a link out of the landing folder) or empty."""
    try:
        fh = open_landing_file(path, spec.data.max_file_mb)
    except LandingRefusedError as exc:
        raise DataError(path, exc.reason) from None
    with fh:
        if os.fstat(fh.fileno()).st_size == 0:
            raise DataError(path, "empty file: no header and no rows")
        yield fh


def read_landing(path: Path, spec: ProjectSpec) -> tuple[pd.DataFrame, str]:
    """read_landing_file, and the sha256 of the very bytes parsed (the data version)."""
    digest = hashlib.sha256()
    with opened_landing(path, spec) as fh:
        if spec.data.format == "parquet":
            frame = _read_parquet(fh, path, digest)
        else:
            frame = _read_csv(fh, path, spec, digest)
    return _columns_checked(frame, path, spec), digest.hexdigest()


def ingest_landing(path: Path, spec: ProjectSpec) -> tuple[pd.DataFrame, QualityReport, str]:
    """Read, parse and judge one landing file: the typed frame (invalid values made missing),
    its quality report and the sha256 of the very bytes parsed.

    A CSV file is streamed through Arrow chunk by chunk (memory: the typed result plus a few
    blocks); a file the streaming reader cannot reproduce exactly (see ``csv_stream``), and a
    Parquet file, are read whole by the exact reader, which also words every refusal."""
    if spec.data.format == "csv":
        try:
            with opened_landing(path, spec) as fh, csv_stream.returned_memory():
                return _ingest_csv(fh, path, spec)
        except csv_stream.NotPlainError:
            pass
        except csv_stream.TooLargeError:
            raise DataError(
                path, f"grew past data.max_file_mb={spec.data.max_file_mb} while it was read"
            ) from None
    frame, sha = read_landing(path, spec)
    typed, report = parse_partition(frame, spec, path)
    return typed, report, sha


def _ingest_csv(
    fh: BinaryIO, path: Path, spec: ProjectSpec
) -> tuple[pd.DataFrame, QualityReport, str]:
    encoding, delimiter = spec.data.encoding, spec.data.delimiter
    names = csv_stream.header(fh, encoding, delimiter)
    stripped = [n.strip() for n in names]
    if len(set(stripped)) != len(stripped) or set(stripped) != set(spec.columns):
        raise csv_stream.NotPlainError("the header is not the spec's columns")
    digest = hashlib.sha256()
    tally = PartitionTally(spec, path, "line")
    limit = spec.data.max_file_mb * MB
    with closing(csv_stream.batches(fh, digest, encoding, delimiter, names, limit)) as batches:
        for batch, lines in batches:
            ordered = batch.rename_columns(stripped).select(list(spec.columns))
            tally.add_text(ordered, lines)
    if not tally.rows:
        raise csv_stream.NotPlainError("no data rows")
    typed, report = tally.finish("line")
    return typed, report, digest.hexdigest()


def _columns_checked(frame: pd.DataFrame, path: Path, spec: ProjectSpec) -> pd.DataFrame:
    """The spec's columns of ``frame`` in order; DataError for repeated, missing or extra ones."""
    header = [str(c).strip() for c in frame.columns]
    seen: set[str] = set()
    for name in header:
        if name in seen:
            raise DataError(path, "column appears twice in the header", column=name)
        seen.add(name)
    frame.columns = header
    missing = [c for c in spec.columns if c not in seen]
    if missing:
        raise DataError(path, f"missing column(s) {', '.join(missing)}; the spec declares them")
    extra = [c for c in header if c not in spec.columns]
    if extra:
        raise DataError(
            path,
            f"unexpected column(s) {', '.join(map(shown, extra))}; "
            "declare them in the spec's columns",
        )
    if frame.empty:
        raise DataError(path, "header only: the file has no data rows")
    return frame[list(spec.columns)]


def parse_partition(
    frame: pd.DataFrame, spec: ProjectSpec, file: Path
) -> tuple[pd.DataFrame, QualityReport]:
    """Typed values of a raw frame (invalid values made missing) and its quality report."""
    label = str(frame.index.name or "row")
    tally = PartitionTally(spec, file, label)
    tally.add_objects(frame[list(spec.columns)])
    typed, report = tally.finish(label)
    return typed.reset_index(drop=True), report
