"""A window of feature partitions as their Parquet files, read a column or a batch at a time.

Torch candidates train from this instead of one pandas frame of the whole window: columns are
read one at a time (preprocessing) or in record batches (network inputs), so memory holds the
network's compact inputs and one batch, never every column of every row as Python objects.
The drift check reads its reference window the same way, one column at a time.
Rows come in partition-key order, as ``split.training_frame`` concatenates them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from mlplatform.steps import split

if TYPE_CHECKING:
    from upath import UPath

BATCH_ROWS = 1 << 16
ATTRS_KEY = b"mlplatform.attrs"  # where the Parquet IO manager keeps a frame's attrs


@dataclass(frozen=True)
class WindowFiles:
    """The Parquet files of a window's partitions, keyed by partition key; ``kept``: the row
    numbers of each partition a sampled window keeps (``split.sampled_rows``), else all."""

    files: Mapping[str, Path | UPath]  # local files, or object storage
    batch_rows: int = BATCH_ROWS
    kept: Mapping[str, np.ndarray] | None = None

    @property
    def keys(self) -> list[str]:
        return sorted(self.files)

    def _parquet(self, key: str) -> pq.ParquetFile:
        return pq.ParquetFile(self.files[key].open("rb"))

    def stored_rows(self) -> dict[str, int]:
        """Rows per stored partition, from the Parquet footers."""
        out = {}
        for key in self.keys:
            with self._parquet(key) as parquet:
                out[key] = parquet.metadata.num_rows
        return out

    def rows(self) -> dict[str, int]:
        """Rows per partition of the window (after sampling)."""
        if self.kept is not None:
            return {k: len(self.kept[k]) for k in self.keys}
        return self.stored_rows()

    def __len__(self) -> int:
        return sum(self.rows().values())

    def sampled(
        self, max_rows: int | None, seed: int
    ) -> tuple[WindowFiles, dict[str, object] | None]:
        """At most ``max_rows`` rows, as ``split.sampled_window`` keeps them from frames; and
        what the training manifest records about the sample (None when every row is kept)."""
        kept, sample = split.sampled_rows(self.stored_rows(), max_rows, seed)
        return WindowFiles(self.files, self.batch_rows, kept), sample

    def attrs(self, key: str) -> dict[str, object]:
        """The ``attrs`` the frame of partition ``key`` was stored with (e.g. ``raw_sha256``)."""
        with self._parquet(key) as parquet:
            raw = (parquet.schema_arrow.metadata or {}).get(ATTRS_KEY)
        return dict(json.loads(raw)) if raw else {}

    def column(self, name: str, rows: slice | None = None) -> pd.Series:
        """One column of the window (``rows`` of it, in window order) as pandas reads it."""
        parts = []
        for key in self.keys:
            with self._parquet(key) as parquet:
                part = parquet.read(columns=[name])
            parts.append(part if self.kept is None else part.take(self.kept[key]))
        table = pa.concat_tables(parts)
        if rows is not None:
            start, stop, _ = rows.indices(table.num_rows)
            table = table.slice(start, stop - start)
        return table.to_pandas()[name]

    def __getitem__(self, name: str) -> pd.Series:
        """``column(name)``: the window reads like a frame, one column at a time."""
        return self.column(name)

    def batches(self, columns: list[str]) -> Iterator[pd.DataFrame]:
        """``columns`` of the window's rows, at most ``batch_rows`` at a time, in window order."""
        for key in self.keys:
            kept = None if self.kept is None else self.kept[key]
            with self._parquet(key) as parquet:
                start = 0
                for batch in parquet.iter_batches(batch_size=self.batch_rows, columns=columns):
                    table = pa.Table.from_batches([batch])
                    if kept is not None:
                        lo, hi = np.searchsorted(kept, [start, start + batch.num_rows])
                        table = table.take(kept[lo:hi] - start)
                    start += batch.num_rows
                    if table.num_rows:
                        yield table.to_pandas()

    def manifest(self) -> dict[str, object]:
        """What the training manifest records: partitions, rows, data versions (as
        ``split.training_manifest``) and how the window was read."""
        keys, stored = self.keys, self.stored_rows()
        return {
            "partitions": keys,
            "rows": stored,
            "data_versions": {k: self.attrs(k).get("raw_sha256") for k in keys},
            "streamed": {"batch_rows": self.batch_rows},
        }
