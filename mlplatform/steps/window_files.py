"""A training window as its feature partitions' Parquet files, read in batches.

Torch candidates train from this instead of one pandas frame of the whole window: columns are
read one at a time (preprocessing) or in record batches (network inputs), so memory holds the
network's compact inputs and one batch, never every column of every row as Python objects.
Rows come in partition-key order, as ``split.training_frame`` concatenates them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

BATCH_ROWS = 1 << 16
ATTRS_KEY = b"mlplatform.attrs"  # where the Parquet IO manager keeps a frame's attrs


@dataclass(frozen=True)
class WindowFiles:
    """The Parquet files of a window's partitions, keyed by partition key."""

    files: dict[str, Path]
    batch_rows: int = BATCH_ROWS

    @property
    def keys(self) -> list[str]:
        return sorted(self.files)

    def rows(self) -> dict[str, int]:
        """Rows per partition, from the Parquet footers."""
        return {k: pq.ParquetFile(self.files[k]).metadata.num_rows for k in self.keys}

    def __len__(self) -> int:
        return sum(self.rows().values())

    def attrs(self, key: str) -> dict[str, object]:
        """The ``attrs`` the frame of partition ``key`` was stored with (e.g. ``raw_sha256``)."""
        meta = pq.read_schema(self.files[key]).metadata or {}
        raw = meta.get(ATTRS_KEY)
        return dict(json.loads(raw)) if raw else {}

    def column(self, name: str, rows: slice | None = None) -> pd.Series:
        """One column of the window (``rows`` of it, in window order) as pandas reads it."""
        parts = [pq.read_table(self.files[k], columns=[name]) for k in self.keys]
        table = pa.concat_tables(parts)
        if rows is not None:
            start, stop, _ = rows.indices(table.num_rows)
            table = table.slice(start, stop - start)
        return table.to_pandas()[name]

    def batches(self, columns: list[str]) -> Iterator[pd.DataFrame]:
        """``columns`` of every row, ``batch_rows`` rows at a time, in window order."""
        for key in self.keys:
            with pq.ParquetFile(self.files[key]) as parquet:
                for batch in parquet.iter_batches(batch_size=self.batch_rows, columns=columns):
                    yield pa.Table.from_batches([batch]).to_pandas()

    def manifest(self) -> dict[str, object]:
        """What the training manifest records about how the window was read."""
        return {"streamed": True, "batch_rows": self.batch_rows, "files": len(self.files)}
