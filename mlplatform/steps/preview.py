"""``validate --data``: the first rows of each landing file checked against the spec.

The rows go through the same parser and quality rules as the ``raw`` asset
(``ingest.parse_partition``), so a format the run would refuse is reported before any run, with
file, line and column.
"""

from __future__ import annotations

import codecs
import csv
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from mlplatform.landing import shown
from mlplatform.spec import ProjectSpec
from mlplatform.steps.ingest import DataError, csv_frame, opened_landing, parse_partition


@dataclass
class Preview:
    """What the sampled landing files showed: problems fail validation, notes do not."""

    files: int = 0
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _head_csv(fh: BinaryIO, path: Path, spec: ProjectSpec, rows: int) -> tuple[pd.DataFrame, bool]:
    encoding = spec.data.encoding
    if codecs.lookup(encoding).name == "utf-8":
        encoding = "utf-8-sig"  # tolerate a byte-order mark, as the raw asset does
    with io.TextIOWrapper(fh, encoding=encoding, newline="") as text:
        reader = csv.reader(text, delimiter=spec.data.delimiter)
        try:
            return csv_frame(reader, path, limit=rows)
        except UnicodeDecodeError as exc:
            raise DataError(
                path,
                f"not valid {spec.data.encoding} text ({exc.reason}) after line "
                f"{reader.line_num}; set data.encoding in the spec (e.g. latin-1)",
            ) from None


def _head_parquet(fh: BinaryIO, path: Path, rows: int) -> tuple[pd.DataFrame, bool]:
    try:
        pf = pq.ParquetFile(fh)
        batch = next(pf.iter_batches(batch_size=rows), None)
        table = (
            pa.Table.from_batches([batch]) if batch is not None else pf.schema_arrow.empty_table()
        )
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(
            path, f"not a readable Parquet file (truncated or corrupt): {exc}"
        ) from None
    frame = table.to_pandas().astype(object)
    frame.index = pd.RangeIndex(1, len(frame) + 1, name="row")
    return frame, pf.metadata.num_rows <= rows


def read_head(path: Path, spec: ProjectSpec, rows: int) -> tuple[pd.DataFrame, bool]:
    """Raw cells of the first ``rows`` data rows (indexed by CSV line or Parquet row number)
    and whether that was the whole file. Refuses what the raw asset refuses before reading:
    a file too large, not a regular file or a link out of the landing folder."""
    with opened_landing(path, spec) as fh:
        if spec.data.format == "parquet":
            return _head_parquet(fh, path, rows)
        return _head_csv(fh, path, spec, rows)


def check_file(path: Path, spec: ProjectSpec, rows: int = 1000) -> Preview:
    """Problems of one landing file's first ``rows`` rows, as the raw checks would judge them."""
    out = Preview(files=1)
    where = shown(path)
    try:
        frame, complete = read_head(path, spec, rows)
    except DataError as exc:
        out.problems.append(str(exc))
        return out
    header = [str(c).strip() for c in frame.columns]
    frame.columns = header
    repeated = sorted({c for c in header if header.count(c) > 1})
    if repeated:
        out.problems.append(
            f"{where}: header: column(s) {', '.join(map(shown, repeated))} appear twice"
        )
        return out
    missing = [c for c in spec.columns if c not in header]
    extra = [c for c in header if c not in spec.columns]
    if missing:
        out.problems.append(
            f"{where}: header: missing column(s) {', '.join(missing)}; the spec declares them "
            "(remove them from the spec's columns, or fix the file)"
        )
    if extra:
        out.problems.append(
            f"{where}: header: unexpected column(s) {', '.join(map(shown, extra))}; declare them "
            "in the spec's columns"
        )
    if frame.empty:
        out.problems.append(f"{where}: header only: the file has no data rows")
        return out
    present = {c: col for c, col in spec.columns.items() if c in header}
    update: dict[str, object] = {"columns": present}
    if not complete:  # a sample says nothing about the file's row count
        update["quality"] = spec.quality.model_copy(update={"min_rows": 1})
    sample = spec.model_copy(update=update)
    _, report = parse_partition(frame[list(present)], sample, path)
    for check, messages in report.problems.items():
        out.problems += [f"{where}: [{check}] {m}" for m in messages]
    for name, q in report.columns.items():
        if (q.invalid or q.out_of_range) and not any(f"column {name!r}" in p for p in out.problems):
            out.notes.append(
                f"{where}: column {name!r}: {q.invalid} invalid ({q.reason}) and "
                f"{q.out_of_range} out-of-range value(s), tolerated by "
                f"quality.max_invalid_fraction; {', '.join(q.examples)}"
            )
    return out


def check_landing(
    spec: ProjectSpec, files: list[Path], stray: list[Path], example: str, rows: int = 1000
) -> Preview:
    """Check the first ``rows`` rows of each landing file; ``stray`` files match no partition
    key (``example`` is a file name that would)."""
    out = Preview()
    for path in stray:
        out.problems.append(
            f"{shown(path)}: file name matches no partition key; expected names like {example!r} "
            f"(data.filename {spec.data.filename!r}, {spec.partitions.granularity} keys from "
            f"partitions.start {spec.partitions.start})"
        )
    for path in files:
        one = check_file(path, spec, rows)
        out.files += 1
        out.problems += one.problems
        out.notes += one.notes
    return out
