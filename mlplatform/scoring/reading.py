"""Stream the feature columns of a CSV or Parquet file in chunks of Arrow arrays, with file
line numbers.

A CSV is read by ``columnar.csv_columns`` (Arrow's streaming reader, each row's file line
counted under it); a file that reader cannot reproduce exactly (a line break inside a quoted
value, a ragged row, odd header spacing, undecodable text) is read again by the exact reader
below, which also words the error."""

from __future__ import annotations

import csv
import io
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pyarrow as pa

from mlplatform.landing import shown

CHUNK_ROWS = 1 << 16
FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


class ScoringError(Exception):
    """Input or output that cannot be scored; the message names the file and what to do."""


class RestartError(Exception):
    """The fast CSV reader gave up after rows were scored: score again from the start (the
    source now reads exactly)."""


@dataclass(frozen=True)
class Chunk:
    """Consecutive input rows: ``first_row`` is the 0-based number of the first data row,
    ``lines`` the file line of each row where known (CSV)."""

    first_row: int
    columns: dict[str, pa.Array]
    lines: np.ndarray | None = None

    def __len__(self) -> int:
        return len(next(iter(self.columns.values()))) if self.columns else 0


def file_format(path: Path, what: str = "input") -> str:
    """``csv`` or ``parquet`` from the file name's suffix."""
    found = FORMATS.get(path.suffix.lower())
    if found is None:
        raise ScoringError(
            f"{shown(path)}: unknown {what} format {path.suffix or '(no suffix)'!r}; "
            "name the file .csv or .parquet"
        )
    return found


def _missing(path: Path, header: Sequence[str], columns: Sequence[str]) -> None:
    absent = [c for c in columns if c not in header]
    if absent:
        raise ScoringError(
            f"{shown(path)}: missing column(s) {', '.join(map(repr, absent))} that the bundle "
            f"reads (the file has {', '.join(map(repr, header)) or 'no columns'}); add them "
            "with the names of the landing files"
        )


class Source:
    """An open input file: ``chunks()`` yields the feature columns, ``position()`` how many
    bytes (CSV) or rows (Parquet) were read so far, ``total`` the size in the same unit.
    ``file_type`` (csv or parquet) overrides the file name's suffix."""

    def __init__(
        self,
        path: Path,
        columns: Sequence[str],
        *,
        delimiter: str = ",",
        encoding: str = "utf-8",
        chunk_rows: int = CHUNK_ROWS,
        file_type: str | None = None,
    ) -> None:
        self.path = path
        self.columns = list(columns)
        self.format = file_type or file_format(path)
        self.delimiter = delimiter
        self.encoding = encoding
        self.chunk_rows = chunk_rows
        try:
            self._fh: BinaryIO = path.open("rb")
        except OSError as exc:
            raise ScoringError(f"{shown(path)}: cannot open the input ({exc.strerror})") from None
        self.total = path.stat().st_size
        self._rows_read = 0
        self.exact = False  # read the CSV with the exact reader

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def position(self) -> int:
        if self.format == "parquet":
            return self._rows_read
        try:
            return self._fh.tell()
        except (OSError, ValueError):
            return 0

    def chunks(self) -> Generator[Chunk, None, None]:
        if self.total == 0:
            raise ScoringError(f"{shown(self.path)}: empty file: no header and no rows")
        if self.format == "parquet":
            yield from self._parquet()
        elif self.exact:
            yield from self._csv()
        else:
            yield from self._csv_columns()

    def _csv_columns(self) -> Iterator[Chunk]:
        from mlplatform.columnar.csv_columns import text_columns
        from mlplatform.columnar.csv_stream import NotPlainError, header

        row = 0
        try:
            names = header(self._fh, self.encoding, self.delimiter)
            if any(n != n.strip() for n in names) or len(set(names)) != len(names):
                raise NotPlainError("header names need trimming or repeat")
            _missing(self.path, names, self.columns)
            batches = text_columns(self._fh, self.encoding, self.delimiter, names, self.columns)
            for batch, lines in batches:
                for start in range(0, batch.num_rows, self.chunk_rows):
                    part = batch.slice(start, self.chunk_rows)
                    yield Chunk(row, _arrays(part), lines[start : start + part.num_rows])
                    row += part.num_rows
        except NotPlainError:
            self.exact = True
            self._fh.seek(0)
            if row:
                raise RestartError from None
            yield from self._csv()

    def _parquet(self) -> Iterator[Chunk]:
        import pyarrow.parquet as pq

        try:
            parquet = pq.ParquetFile(self._fh)
        except (pa.ArrowException, OSError) as exc:
            raise ScoringError(f"{shown(self.path)}: not a readable Parquet file ({exc})") from None
        self.total = parquet.metadata.num_rows
        _missing(self.path, parquet.schema_arrow.names, self.columns)
        try:
            for batch in parquet.iter_batches(batch_size=self.chunk_rows, columns=self.columns):
                chunk = Chunk(self._rows_read, _arrays(batch))
                self._rows_read += batch.num_rows
                yield chunk
        except (pa.ArrowException, OSError) as exc:
            raise ScoringError(
                f"{shown(self.path)}: corrupt Parquet after row {self._rows_read} ({exc})"
            ) from None

    def _header(self) -> list[str]:
        text = io.TextIOWrapper(self._fh, encoding=self.encoding, newline="")
        try:
            header = next(csv.reader(text, delimiter=self.delimiter), [])
        except UnicodeDecodeError as exc:
            raise ScoringError(
                f"{shown(self.path)}: line 1 is not {self.encoding} text ({exc.reason}); save "
                "the file as UTF-8 or set data.encoding in the spec"
            ) from None
        finally:
            text.detach()
        self._fh.seek(0)
        return [h.strip() for h in header]

    def _csv(self) -> Iterator[Chunk]:
        import pyarrow.csv as pcsv

        from mlplatform.columnar.arrow_files import CsvReader

        header = self._header()
        _missing(self.path, header, self.columns)
        bad: list[Any] = []

        def refuse(row: Any) -> str:
            bad.append(row)
            return "error"

        try:
            with CsvReader(
                self._fh,
                read_options=pcsv.ReadOptions(
                    encoding=self.encoding,
                    block_size=1 << 22,
                    column_names=header,
                    skip_rows=1,
                ),
                parse_options=pcsv.ParseOptions(
                    delimiter=self.delimiter, invalid_row_handler=refuse
                ),
                convert_options=pcsv.ConvertOptions(
                    include_columns=self.columns,
                    column_types={c: pa.string() for c in self.columns},
                    null_values=[],
                    strings_can_be_null=False,
                    quoted_strings_can_be_null=False,
                ),
            ) as reader:
                row = 0
                for batch in reader:
                    if batch.num_rows == 0:
                        continue
                    yield Chunk(row, _arrays(batch))
                    row += batch.num_rows
        except (pa.ArrowException, UnicodeDecodeError) as exc:
            if bad:
                got = bad[0]
                raise ScoringError(
                    f"{shown(self.path)}: {self._ragged_line(len(header))} has "
                    f"{got.actual_columns} field(s), the header {got.expected_columns}; fix the "
                    "row (a stray delimiter or quote?)"
                ) from None
            raise ScoringError(
                f"{shown(self.path)}: unreadable CSV ({exc}); check data.encoding and "
                "data.delimiter of the spec"
            ) from None

    def _ragged_line(self, width: int) -> str:
        """``line N`` of the first row whose field count differs from the header's (the
        streaming parser does not know line numbers; this scan runs only on that error)."""
        with self.path.open(encoding=self.encoding, errors="replace", newline="") as fh:
            reader = csv.reader(fh, delimiter=self.delimiter)
            for row in reader:
                if row and len(row) != width:
                    return f"line {reader.line_num}"
        return "a line"


def _arrays(batch: Any) -> dict[str, pa.Array]:
    return {name: batch.column(i) for i, name in enumerate(batch.schema.names)}
