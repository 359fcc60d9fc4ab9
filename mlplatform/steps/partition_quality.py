"""The quality of one partition, added up chunk by chunk: per column the missing, invalid
and out-of-range values with examples, the partition's row count and duplicate rows, and the
typed values. ``ingest`` feeds it from a CSV stream or from a frame already read."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeAlias

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from mlplatform.columnar.column_threads import column_map, column_submit
from mlplatform.columnar.kernels import ParsedText, parse_text
from mlplatform.columns import Parsed, parse_column
from mlplatform.landing import shown
from mlplatform.spec import Column, ProjectSpec


@dataclass
class ColumnQuality:
    """What was wrong in one column."""

    missing: int = 0
    invalid: int = 0
    out_of_range: int = 0
    reason: str = ""
    examples: list[str] = field(default_factory=list)


@dataclass
class QualityReport:
    """Findings about one parsed landing file; ``problems`` are the failures per check."""

    file: Path
    rows: int
    columns: dict[str, ColumnQuality]
    duplicate_lines: list[int]
    problems: dict[str, list[str]]

    @property
    def passed(self) -> bool:
        return not any(self.problems.values())


CHECKS = ("schema", "ranges", "row_count", "target")
EXAMPLES = 5


Cells: TypeAlias = "np.ndarray | pa.Array"


class _Examples:
    """The first EXAMPLES offending cells of a mask, gathered chunk by chunk."""

    def __init__(self, label: str):
        self.label = label
        self.found: list[str] = []

    def add(self, mask: np.ndarray, raw: Cells, lines: np.ndarray) -> None:
        need = EXAMPLES - len(self.found)
        if need > 0:
            for i in np.flatnonzero(mask)[:need]:
                self.found.append(f"{self.label} {lines[i]} {_cell(raw, int(i))!r}")


def _cell(raw: Cells, i: int) -> object:
    return raw[i].as_py() if isinstance(raw, pa.Array) else raw[i]


class ColumnTally:
    """One column's quality, added up chunk by chunk; the checks judge the whole file."""

    def __init__(self, name: str, column: Column, label: str):
        self.name, self.column = name, column
        self.quality = ColumnQuality()
        self.invalid = _Examples(label)
        self.outside = _Examples(label)
        self.either = _Examples(label)
        self.gone = _Examples(label)
        self.gone_count = 0
        self.distinct: set[object] = set()
        self.values: list[object] = []
        self.memo: dict[str, object] = {}  # distinct texts already judged (dates)

    def add(self, parsed: ParsedText | Parsed, raw: Cells, lines: np.ndarray) -> None:
        q = self.quality
        q.reason = parsed.reason
        q.missing += int(parsed.missing.sum())
        q.invalid += int(parsed.invalid.sum())
        q.out_of_range += int(parsed.out_of_range.sum())
        gone = parsed.missing | parsed.invalid
        self.gone_count += int(gone.sum())
        self.invalid.add(parsed.invalid, raw, lines)
        self.outside.add(parsed.out_of_range, raw, lines)
        self.either.add(parsed.invalid | parsed.out_of_range, raw, lines)
        self.gone.add(gone, raw, lines)
        if self.column.type == "category":
            values = parsed.values
            if isinstance(values, pa.Array):
                self.distinct.update(pc.unique(values.drop_null()).to_pylist())
            else:
                self.distinct.update(pd.unique(values[~gone]))
        self.values.append(parsed.values)

    def problems(
        self, n: int, spec: ProjectSpec, file: Path, problems: dict[str, list[str]]
    ) -> None:
        """What breaks a check, added to ``problems``."""
        name, col, cq, q = self.name, self.column, self.quality, spec.quality
        if cq.invalid and cq.invalid / n > q.max_invalid_fraction:
            check = "ranges" if col.type == "category" else "schema"
            problems[check].append(
                f"column {name!r}: {cq.invalid} of {n} values ({cq.invalid / n:.1%}) "
                f"{cq.reason}, above quality.max_invalid_fraction={q.max_invalid_fraction}; "
                + ", ".join(self.invalid.found)
            )
        if cq.out_of_range and cq.out_of_range / n > q.max_invalid_fraction:
            problems["ranges"].append(
                f"column {name!r}: {cq.out_of_range} of {n} values ({cq.out_of_range / n:.1%}) "
                f"outside [{col.min}, {col.max}], above quality.max_invalid_fraction="
                f"{q.max_invalid_fraction}; " + ", ".join(self.outside.found)
            )
        if col.type == "category":
            limit = spec.category_limit(name)
            if len(self.distinct) > limit:
                problems["ranges"].append(
                    f"column {name!r}: {len(self.distinct)} distinct values, above the category "
                    f"limit {limit} (columns.{name}.max_categories, default "
                    "quality.max_categories); declare it `type: id` if it identifies rows, or "
                    "raise the limit"
                )
        if name == spec.target and self.gone_count:
            problems["target"].append(
                f"target column {name!r}: {self.gone_count} missing or invalid value(s); "
                + ", ".join(self.gone.found)
            )
        elif not col.nullable and self.gone_count:
            problems["schema"].append(
                f"column {name!r}: {self.gone_count} missing or invalid value(s) in a "
                f"non-nullable column; " + ", ".join(self.gone.found)
            )
        else:
            problems["schema"] += _missing_problem(name, cq.missing, n, spec, file)
        cq.examples = list(self.either.found)

    def typed(self) -> pa.ChunkedArray | np.ndarray:
        """All typed values, the chunks released as they are joined."""
        chunks, self.values = self.values, []
        if chunks and isinstance(chunks[0], pa.Array):
            return pa.chunked_array(chunks, pa.large_string())
        if len(chunks) == 1:
            return chunks[0]
        out: np.ndarray = np.concatenate(chunks)  # type: ignore[arg-type]
        del chunks
        return out


def _missing_problem(
    name: str, missing: int, rows: int, spec: ProjectSpec, file: Path
) -> list[str]:
    """The column's missing share when it is above its limit (column's own, else the project's)."""
    own = spec.columns[name].max_missing_fraction
    limit = spec.quality.max_missing_fraction if own is None else own
    if not missing or missing / rows <= limit:
        return []
    field = (
        "quality.max_missing_fraction" if own is None else f"columns.{name}.max_missing_fraction"
    )
    return [
        f"column {name!r}: {missing} of {rows} values ({missing / rows:.1%}) are missing in "
        f"{shown(file.name)}, above {field}={limit}; fix the file, or raise "
        f"columns.{name}.max_missing_fraction if that many gaps are expected"
    ]


class PartitionTally:
    """A partition's quality and typed values, added up chunk by chunk."""

    def __init__(self, spec: ProjectSpec, file: Path, label: str):
        self.spec, self.file = spec, file
        self.columns = {name: ColumnTally(name, col, label) for name, col in spec.columns.items()}
        self.rows = 0
        self.hashes: list[np.ndarray] = []
        self.lines: list[np.ndarray] = []

    def add_text(self, batch: pa.RecordBatch, lines: np.ndarray) -> None:
        """A chunk of raw text cells (the spec's columns, in order) at these file lines."""

        def parsed(tally: ColumnTally) -> tuple[ColumnTally, ParsedText, pa.Array]:
            raw = batch.column(tally.name)
            return tally, parse_text(raw, tally.column, tally.memo), raw  # memo: its own

        # the row hashes and the columns on the column threads, side by side
        hashed = column_submit(lambda: _row_hashes(batch))
        for tally, text, raw in column_map(parsed, self.columns.values()):
            tally.add(text, raw, lines)
        self._add_hashes(hashed.result(), lines)

    def add_objects(self, frame: pd.DataFrame) -> None:
        """A chunk of raw cells as Python objects (strings, or Parquet values), indexed by line."""
        lines = frame.index.to_numpy()
        text = all(map(_all_text, (frame[c].to_numpy(dtype=object) for c in frame.columns)))
        if text and len(frame):
            batch = pa.RecordBatch.from_arrays(
                [
                    pa.array(frame[c].to_numpy(dtype=object), pa.large_string())
                    for c in frame.columns
                ],
                names=list(frame.columns),
            )
            for name, tally in self.columns.items():
                raw = frame[name].to_numpy(dtype=object)
                tally.add(parse_text(batch.column(name), tally.column), raw, lines)
        else:
            for name, tally in self.columns.items():
                raw = frame[name].to_numpy(dtype=object)
                tally.add(parse_column(raw, tally.column), raw, lines)
        keys = pd.util.hash_pandas_object(frame, index=False).to_numpy()
        salted = pd.util.hash_pandas_object(frame, index=False, hash_key=SALT).to_numpy()
        self.hashes.append(np.stack([keys, salted], axis=1))
        self.lines.append(lines)
        self.rows += len(frame)

    def _add_hashes(self, hashes: np.ndarray, lines: np.ndarray) -> None:
        self.hashes.append(hashes)
        self.lines.append(lines)
        self.rows += len(hashes)

    def finish(self, label: str) -> tuple[pd.DataFrame, QualityReport]:
        """The typed frame (invalid values made missing) and the quality report."""
        spec, n = self.spec, self.rows
        q = spec.quality
        problems: dict[str, list[str]] = {name: [] for name in CHECKS}
        for tally in self.columns.values():
            tally.problems(n, spec, self.file, problems)
        hashes = np.concatenate(self.hashes) if self.hashes else np.empty((0, 2), np.uint64)
        lines = np.concatenate(self.lines) if self.lines else np.empty(0, np.int64)
        self.hashes = self.lines = []
        dup = _duplicated(hashes)
        del hashes
        duplicate_lines = [int(i) for i in lines[dup]]
        if duplicate_lines and not q.allow_duplicate_rows:
            problems["row_count"].append(
                f"{len(duplicate_lines)} duplicated row(s) at {label}(s) "
                + ", ".join(map(str, duplicate_lines[:10]))
                + " (set quality.allow_duplicate_rows to accept them)"
            )
        if n < q.min_rows:
            problems["row_count"].append(f"{n} rows, fewer than quality.min_rows={q.min_rows}")
        columns = {name: t.quality for name, t in self.columns.items()}
        report = QualityReport(self.file, n, columns, duplicate_lines, problems)
        return self._frame(), report

    def _frame(self) -> pd.DataFrame:
        arrays = {name: tally.typed() for name, tally in self.columns.items()}
        if not any(isinstance(a, pa.ChunkedArray) for a in arrays.values()):
            return pd.DataFrame(arrays)
        table = pa.table({name: _arrow(a) for name, a in arrays.items()})
        del arrays
        return table.to_pandas(split_blocks=True, self_destruct=True)


def _duplicated(hashes: np.ndarray) -> np.ndarray:
    """Rows whose (two-part) hash an earlier row has (``DataFrame.duplicated``, keep first):
    a hash table finds the rows that share the first part with another row (duplicates, or a
    rare collision of the first part); only those are compared on both parts."""
    dup = np.zeros(len(hashes), dtype=bool)
    if len(hashes) < 2:
        return dup
    tied = pd.Series(hashes[:, 0], copy=False).duplicated(keep=False).to_numpy()
    rows = np.flatnonzero(tied)  # in file order: the first of equals is kept
    if len(rows):
        dup[rows] = pd.DataFrame(hashes[rows]).duplicated(keep="first").to_numpy()
    return dup


def _row_hashes(batch: pa.RecordBatch) -> np.ndarray:
    """Each row's two-part hash: its cells joined, as bytes (not decoded to str first)."""
    joined = pc.binary_join_element_wise(*batch.columns, ROW_SEPARATOR).cast(pa.binary())
    rows = joined.to_numpy(zero_copy_only=False)
    keys = pd.util.hash_array(rows, categorize=False)
    salted = pd.util.hash_array(rows, hash_key=SALT, categorize=False)
    return np.stack([keys, salted], axis=1)


ROW_SEPARATOR = "\x1f\x00"
SALT = "mlplatform-dupes"  # a second, independent hash key: 128 bits per row


def _all_text(values: np.ndarray) -> bool:
    return all(type(v) is str for v in values)


def _arrow(values: pa.ChunkedArray | np.ndarray) -> pa.ChunkedArray | pa.Array:
    if isinstance(values, pa.ChunkedArray):
        return values
    if values.dtype == object:
        return pa.array(values, pa.large_string())
    if values.dtype.kind == "M":
        return pa.array(values, pa.timestamp("s"))
    return pa.array(values)
