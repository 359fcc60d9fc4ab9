"""The asset store's Parquet files: what is written besides the values."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from upath import UPath

from mlplatform.resources.store import read_parquet, write_parquet

pytestmark = pytest.mark.unit


def _frame(rows: int = 40_000) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    frame = pd.DataFrame(
        {
            "amount": rng.normal(size=rows),
            "calls": rng.integers(0, 5, rows).astype(float),
            "day": pd.to_datetime("2024-01-01") + pd.to_timedelta(rng.integers(0, 30, rows), "D"),
            "plan": pd.array(rng.choice(["basic", "premium"], rows), dtype="str"),
            "customer": pd.array([f"c{i}" for i in range(rows)], dtype="str"),
        }
    )
    frame.attrs = {"sha256": "abc"}
    return frame


def test_numbers_and_dates_keep_statistics_text_does_not(tmp_path: Path) -> None:
    frame = _frame()
    path = UPath(tmp_path / "part.parquet")
    write_parquet(frame, path)
    meta = pq.ParquetFile(path.path).metadata
    for group in range(meta.num_row_groups):
        columns = meta.row_group(group)
        stats = {
            columns.column(i).path_in_schema: columns.column(i).is_stats_set
            for i in range(columns.num_columns)
        }
        assert stats == {
            "amount": True,
            "calls": True,
            "day": True,
            "plan": False,
            "customer": False,
        }
    encodings = meta.row_group(0).column(3).encodings  # plan: repeats, so a dictionary
    assert any("DICTIONARY" in e for e in encodings)
    back = read_parquet(path)
    assert back.attrs == {"sha256": "abc"}
    pd.testing.assert_frame_equal(back, frame, check_dtype=False)
