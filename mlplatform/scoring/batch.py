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
from collections.abc import Callable, Generator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from mlplatform.bundles.format import Bundle
from mlplatform.landing import shown
from mlplatform.scoring.feeds import chunk_feeds
from mlplatform.scoring.reading import Chunk, RestartError, ScoringError, Source, file_format


@dataclass
class Summary:
    """What one scoring pass did: rows, and per column the invalid values scored as missing
    (as in training) with the first input row number (and file line, where known) where one
    was seen."""

    rows: int = 0
    invalid: dict[str, int] = field(default_factory=dict)
    first_invalid: dict[str, int] = field(default_factory=dict)
    first_line: dict[str, int] = field(default_factory=dict)

    def warnings(self, path: Path, csv_lines: bool) -> list[str]:
        """One line per column with invalid values, naming the file, column and first line."""
        out = []
        for column, count in sorted(self.invalid.items()):
            first = self.first_invalid[column]
            line = self.first_line.get(column, first + 2)
            where = f"line {line}" if csv_lines else f"row {first}"
            out.append(
                f"{shown(path)}: column {column!r}: {count} invalid value(s) scored as missing "
                f"(first at {where})"
            )
        return out

    def count(self, chunk: Chunk, invalid: dict[str, np.ndarray]) -> None:
        """Add a chunk's rows and invalid values."""
        for name, mask in invalid.items():
            found = int(mask.sum())
            if not found:
                continue
            self.invalid[name] = self.invalid.get(name, 0) + found
            if name not in self.first_invalid:
                at = int(np.argmax(mask))
                self.first_invalid[name] = chunk.first_row + at
                if chunk.lines is not None:
                    self.first_line[name] = int(chunk.lines[at])
        self.rows += len(chunk)


def _run(bundle: Bundle, inputs: dict[str, np.ndarray]) -> np.ndarray:
    """Probabilities [N, classes] or values [N]: only the output used is fetched."""
    outputs = bundle.session.get_outputs()
    wanted = outputs[0] if bundle.classes is None else outputs[1]
    (out,) = bundle.session.run([wanted.name], inputs)
    if bundle.classes is None:
        return np.asarray(out, dtype=np.float64).reshape(-1)
    return np.asarray(out, dtype=np.float64)


def predict_chunk(
    bundle: Bundle, chunk: Chunk, summary: Summary, memo: dict[str, object] | None = None
) -> pa.Table:
    """Output table of one chunk: ``row``, ``bundle_id``, ``label``/``proba_*`` or ``value``."""
    feeds = chunk_feeds(chunk.columns, bundle.schema, memo)
    summary.count(chunk, feeds.invalid)
    return output_table(bundle, chunk, _run(bundle, feeds.inputs))


def output_table(bundle: Bundle, chunk: Chunk, out: np.ndarray) -> pa.Table:
    """The output rows of a chunk from the model's probabilities or values."""
    n = len(chunk)
    arrays: dict[str, pa.Array] = {
        "row": pa.array(np.arange(chunk.first_row, chunk.first_row + n, dtype=np.int64)),
        "bundle_id": pa.DictionaryArray.from_arrays(
            pa.array(np.zeros(n, dtype=np.int32)), pa.array([bundle.bundle_id])
        ),
    }
    if bundle.classes is None:
        arrays["value"] = pa.array(out, pa.float64())
        return pa.table(arrays)
    best = np.argmax(out, axis=1).astype(np.int32)
    labels = pa.DictionaryArray.from_arrays(pa.array(best), pa.array(bundle.classes, pa.string()))
    arrays["label"] = labels.cast(pa.string())
    for i, name in enumerate(bundle.classes):
        arrays[f"proba_{name}"] = pa.array(np.ascontiguousarray(out[:, i]), pa.float64())
    return pa.table(arrays)


def predictions(
    bundle: Bundle, source: Source, summary: Summary
) -> Generator[pa.Table, None, None]:
    """Output tables, chunk by chunk. The model scores a chunk in a second thread while the
    next one is read and parsed (onnxruntime and the Arrow kernels release the GIL)."""
    memo: dict[str, object] = {}
    with (
        ThreadPoolExecutor(1, thread_name_prefix="onnx") as pool,
        closing(source.chunks()) as chunks,
    ):
        pending: tuple[Chunk, Future[np.ndarray]] | None = None
        for chunk in chunks:
            feeds = chunk_feeds(chunk.columns, bundle.schema, memo)
            summary.count(chunk, feeds.invalid)
            scored = pool.submit(_run, bundle, feeds.inputs)
            if pending is not None:
                yield output_table(bundle, pending[0], pending[1].result())
            pending = (chunk, scored)
        if pending is not None:
            yield output_table(bundle, pending[0], pending[1].result())


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

            # the probabilities and row numbers never repeat: a dictionary for them would be
            # built, then dropped (a third of the write time)
            repeating = [n for n in ("bundle_id", "label") if n in schema.names]
            return pq.ParquetWriter(self._tmp, schema, use_dictionary=repeating)
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
    return pa.schema(
        [
            pa.field(f.name, pa.string() if pa.types.is_dictionary(f.type) else f.type)
            for f in schema
        ]
    )


def empty_schema(bundle: Bundle) -> Any:
    """The output schema of a bundle (for an input without rows)."""

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
    try:
        return _score_file(bundle, source, out, on_chunk)
    except RestartError:  # the source reads exactly now
        return _score_file(bundle, source, out, on_chunk)


def _score_file(
    bundle: Bundle, source: Source, out: Path, on_chunk: Callable[[int, int], None] | None
) -> Summary:
    summary = Summary()
    writer = Writer(out)
    try:
        with closing(predictions(bundle, source, summary)) as tables:
            for table in tables:
                writer.write(table)
                if on_chunk is not None:
                    on_chunk(source.position(), summary.rows)
        writer.commit(empty_schema(bundle))
    except BaseException:
        writer.abort()
        raise
    return summary


def score_table(bundle: Bundle, source: Source) -> tuple[pa.Table, Summary]:
    """Every row of ``source`` scored by ``bundle``, as one Arrow table (plain string
    ``bundle_id``), and the summary."""
    try:
        return _score_table(bundle, source)
    except RestartError:
        return _score_table(bundle, source)


def _score_table(bundle: Bundle, source: Source) -> tuple[pa.Table, Summary]:
    summary = Summary()
    with closing(predictions(bundle, source, summary)) as chunks:
        tables = list(chunks)
    table = pa.concat_tables(tables) if tables else empty_schema(bundle).empty_table()
    return table.cast(_plain(table.schema)), summary
