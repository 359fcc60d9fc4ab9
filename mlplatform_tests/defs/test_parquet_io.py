"""The Parquet IO manager writes each partition of a run, whether the run holds one partition
(tagged with it, or as a range of one) or a range of several."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from mlplatform.resources.store import ParquetIOManager, partition_path, read_parquet

PARTS = dg.MonthlyPartitionsDefinition(start_date="2024-01-01", fmt="%Y-%m-%d", day_offset=1)
KEY = dg.AssetKey(["p", "raw"])


def frame(n: int) -> pd.DataFrame:
    return pd.DataFrame({"x": range(n)})


def output_context(keys: list[str]) -> dg.OutputContext:
    return dg.build_output_context(
        asset_key=KEY,
        partition_key=keys[0] if len(keys) == 1 else None,
        asset_partitions_def=PARTS,
        asset_partition_key_range=dg.PartitionKeyRange(keys[0], keys[-1]),
    )


def test_one_partition_and_each_partition_of_a_range(tmp_path: Path) -> None:
    io = ParquetIOManager(base_path=str(tmp_path))
    io.handle_output(output_context(["2024-01-01"]), frame(1))
    keys = ["2024-02-01", "2024-03-01", "2024-04-01"]
    io.handle_output(output_context(keys), {k: frame(i + 2) for i, k in enumerate(keys)})
    for i, k in enumerate(["2024-01-01", *keys]):
        assert len(read_parquet(partition_path(str(tmp_path), KEY, k))) == i + 1


def test_a_range_needs_one_frame_per_partition(tmp_path: Path) -> None:
    io = ParquetIOManager(base_path=str(tmp_path))
    keys = ["2024-02-01", "2024-03-01"]
    with pytest.raises(TypeError, match="one DataFrame per partition"):
        io.handle_output(output_context(keys), frame(2))
    with pytest.raises(ValueError, match="no DataFrame for partition"):
        io.handle_output(output_context(keys), {"2024-02-01": frame(2)})
    assert not (tmp_path / "p").exists()  # nothing half-written
