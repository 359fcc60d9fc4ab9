"""The Parquet IO manager writes each partition of a run, whether the run holds one partition
(tagged with it, or as a range of one) or a range of several."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from mlplatform.resources.store import (
    FrameHandover,
    ParquetIOManager,
    partition_path,
    read_parquet,
)

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


def test_a_handed_over_frame_is_stored_and_not_kept(tmp_path: Path) -> None:
    """A run executed in process keeps every output value until it ends: the value a data
    step returns holds no frame once the IO manager has stored it."""
    import gc
    import weakref

    io = ParquetIOManager(base_path=str(tmp_path))
    stored = frame(5)
    alive = weakref.ref(stored)
    handover = FrameHandover(stored)
    del stored
    io.handle_output(output_context(["2024-01-01"]), handover)
    gc.collect()
    assert alive() is None
    assert len(read_parquet(partition_path(str(tmp_path), KEY, "2024-01-01"))) == 5
    with pytest.raises(RuntimeError, match="already handed over"):
        handover.take()


def test_an_input_reads_only_the_columns_it_names(tmp_path: Path) -> None:
    io = ParquetIOManager(base_path=str(tmp_path))
    io.handle_output(output_context(["2024-01-01"]), frame(3).assign(y=1, z="a"))
    context = dg.build_input_context(
        asset_key=KEY,
        partition_key="2024-01-01",
        asset_partitions_def=PARTS,
        definition_metadata={"columns": ["z", "x"]},
    )
    (loaded,) = io.load_input(context).values()  # no upstream output here: a dict
    assert list(loaded.columns) == ["z", "x"] and list(loaded["x"]) == [0, 1, 2]


def input_context(columns: list[str] | None = None) -> dg.InputContext:
    return dg.build_input_context(
        asset_key=KEY,
        partition_key="2024-01-01",
        asset_partitions_def=PARTS,
        definition_metadata={"columns": columns} if columns else None,
    )


def test_a_passed_on_frame_is_the_next_loads_then_let_go(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gc
    import weakref

    import mlplatform.resources.store as store

    io = ParquetIOManager(base_path=str(tmp_path))
    stored = frame(4).assign(y=2, z="a")
    stored.attrs = {"sha256": "abc"}
    alive = weakref.ref(stored)
    io.handle_output(output_context(["2024-01-01"]), FrameHandover(stored, pass_on=True))
    del stored
    read: list[object] = []
    monkeypatch.setattr(store, "read_parquet", lambda *a: read.append(a) or read_parquet(*a))

    (passed,) = io.load_input(input_context(["z", "x"])).values()
    assert read == []  # from memory, only the columns asked for, with the attrs
    assert list(passed.columns) == ["z", "x"] and list(passed["x"]) == [0, 1, 2, 3]
    assert passed.attrs == {"sha256": "abc"}
    gc.collect()
    assert alive() is None  # the whole frame is not kept once passed on
    (again,) = io.load_input(input_context(["z", "x"])).values()
    assert len(read) == 1 and again.equals(passed)  # the next load reads the file


def test_a_file_rewritten_since_is_read_from_disk(tmp_path: Path) -> None:
    io = ParquetIOManager(base_path=str(tmp_path))
    io.handle_output(output_context(["2024-01-01"]), FrameHandover(frame(4), pass_on=True))
    ParquetIOManager(base_path=str(tmp_path)).handle_output(  # another run, same partition
        output_context(["2024-01-01"]), frame(7)
    )
    (loaded,) = io.load_input(input_context()).values()
    assert len(loaded) == 7


def test_only_the_next_load_may_take_a_passed_frame(tmp_path: Path) -> None:
    io = ParquetIOManager(base_path=str(tmp_path))
    io.handle_output(output_context(["2024-01-01"]), FrameHandover(frame(4), pass_on=True))
    other = dg.build_input_context(
        asset_key=dg.AssetKey(["p", "other"]), partition_key="2024-01-01",
        asset_partitions_def=PARTS,
    )  # fmt: skip
    with pytest.raises(FileNotFoundError):
        io.load_input(other)
    assert io._passed is None
