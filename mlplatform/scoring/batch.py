"""Score a file with one bundle: chunks in, a Parquet or CSV file of predictions out.

One output row per input row: ``row`` (0-based number of the input data row), ``bundle_id``,
then ``label`` and ``proba_<class>`` per class (classification) or ``value`` (regression) —
the values ``Bundle.predict_rows`` and the serving API return. The output is written to a
temporary file beside the target and renamed over it when complete: a failed run leaves what
was there before.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mlplatform.bundles.format import Bundle
from mlplatform.columns import derive_features, parse_column
from mlplatform.landing import shown
from mlplatform.scoring.reading import Chunk, ScoringError, Source, file_format


@dataclass
class Summary:
    """What one scoring pass did: rows, and per column the invalid values scored as missing
    (as in training) with the first input row number where one was seen."""

    rows: int = 0
    invalid: dict[str, int] = field(default_factory=dict)
    first_invalid: dict[str, int] = field(default_factory=dict)

    def warnings(self, path: Path, csv_lines: bool) -> list[str]:
        """One line per column with invalid values, naming the file, column and first line."""
        out = []
        for column, count in sorted(self.invalid.items()):
            first = self.first_invalid[column]
            where = f"line {first + 2}" if csv_lines else f"row {first}"
            out.append(
                f"{shown(path)}: column {column!r}: {count} invalid value(s) scored as missing "
                f"(first at {where})"
            )
        return out


def predict_chunk(bundle: Bundle, chunk: Chunk, summary: Summary) -> dict[str, np.ndarray]:
    """Output columns of one chunk (``row``, ``label``/``proba_*`` or ``value``)."""
    schema = bundle.schema
    parsed = {}
    for name in schema.feature_columns:
        p = parse_column(chunk.columns[name], schema.columns[name])
        invalid = int(p.invalid.sum())
        if invalid:
            summary.invalid[name] = summary.invalid.get(name, 0) + invalid
            summary.first_invalid.setdefault(name, chunk.first_row + int(np.argmax(p.invalid)))
        parsed[name] = p.values
    feats = derive_features(parsed, schema.columns, schema.features, schema.feature_columns)
    out = bundle.predict_features(feats)
    summary.rows += len(chunk)
    rows = np.arange(chunk.first_row, chunk.first_row + len(chunk), dtype=np.int64)
    if bundle.classes is None:
        return {"row": rows, "value": out}
    classes = np.asarray(bundle.classes, dtype=object)
    columns: dict[str, np.ndarray] = {"row": rows, "label": classes[np.argmax(out, axis=1)]}
    for i, name in enumerate(bundle.classes):
        columns[f"proba_{name}"] = out[:, i]
    return columns


def predictions(
    bundle: Bundle, source: Source, summary: Summary
) -> Iterator[dict[str, np.ndarray]]:
    """Output columns, chunk by chunk."""
    for chunk in source.chunks():
        yield predict_chunk(bundle, chunk, summary)


def _table(columns: dict[str, np.ndarray], bundle_id: str) -> Any:
    import pyarrow as pa

    n = len(columns["row"])
    arrays = {"row": pa.array(columns["row"], pa.int64())}
    arrays["bundle_id"] = pa.DictionaryArray.from_arrays(
        pa.array(np.zeros(n, dtype=np.int32)), pa.array([bundle_id])
    )
    for name, values in columns.items():
        if name == "row":
            continue
        kind = pa.string() if values.dtype == object else pa.float64()
        arrays[name] = pa.array(values, kind)
    return pa.table(arrays)


class Writer:
    """Parquet or CSV output written to a temporary file, renamed over ``path`` on commit."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.format = file_format(path, "output")
        if not path.parent.is_dir():
            raise ScoringError(
                f"{shown(path)}: the output folder {shown(path.parent)} does not exist; "
                "create it first"
            )
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        self._tmp = Path(tmp)
        self._writer: Any = None

    def write(self, table: Any) -> None:
        if self._writer is None:
            self._writer = self._open(table.schema)
        if self.format == "csv":
            table = table.cast(_plain(table.schema))
        self._writer.write_table(table)

    def _open(self, schema: Any) -> Any:
        if self.format == "parquet":
            import pyarrow.parquet as pq

            return pq.ParquetWriter(self._tmp, schema)
        import pyarrow.csv as pcsv

        return pcsv.CSVWriter(self._tmp, _plain(schema))

    def commit(self, empty_schema: Any) -> None:
        if self._writer is None:
            self._writer = self._open(empty_schema)
        self._writer.close()
        os.replace(self._tmp, self.path)

    def abort(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._tmp.unlink(missing_ok=True)


def _plain(schema: Any) -> Any:
    """The schema with dictionary columns as plain strings (CSV has no dictionaries)."""
    import pyarrow as pa

    return pa.schema(
        [
            pa.field(f.name, pa.string() if pa.types.is_dictionary(f.type) else f.type)
            for f in schema
        ]
    )


def empty_schema(bundle: Bundle) -> Any:
    """The output schema of a bundle (for an input without rows)."""
    import pyarrow as pa

    fields = [
        pa.field("row", pa.int64()),
        pa.field("bundle_id", pa.dictionary(pa.int32(), pa.string())),
    ]
    if bundle.classes is None:
        fields.append(pa.field("value", pa.float64()))
    else:
        fields.append(pa.field("label", pa.string()))
        fields += [pa.field(f"proba_{c}", pa.float64()) for c in bundle.classes]
    return pa.schema(fields)


def score_file(
    bundle: Bundle,
    source: Source,
    out: Path,
    on_chunk: Callable[[int, int], None] | None = None,
) -> Summary:
    """Score every row of ``source`` with ``bundle`` into ``out`` (atomically)."""
    summary = Summary()
    writer = Writer(out)
    try:
        for columns in predictions(bundle, source, summary):
            writer.write(_table(columns, bundle.bundle_id))
            if on_chunk is not None:
                on_chunk(source.position(), summary.rows)
        writer.commit(empty_schema(bundle))
    except BaseException:
        writer.abort()
        raise
    return summary


def score_table(bundle: Bundle, source: Source) -> tuple[Any, Summary]:
    """Every row of ``source`` scored by ``bundle``, as one Arrow table (plain string
    ``bundle_id``), and the summary."""
    import pyarrow as pa

    summary = Summary()
    tables = [_table(columns, bundle.bundle_id) for columns in predictions(bundle, source, summary)]
    table = pa.concat_tables(tables) if tables else empty_schema(bundle).empty_table()
    return table.cast(_plain(table.schema)), summary
