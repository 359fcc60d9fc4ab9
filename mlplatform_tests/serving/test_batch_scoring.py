"""Batch scoring parses whole columns with the Arrow kernels: its ONNX feeds equal the serving
API's (``InputSchema.model_inputs``) on dirty text and on typed Parquet columns, a bad value in
a later chunk is named with its file line, and a file the fast reader gives up on late is
scored again by the exact reader (which words the error)."""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mlplatform.bundles.format import Bundle, load
from mlplatform.scoring.batch import score_file
from mlplatform.scoring.feeds import chunk_feeds
from mlplatform.scoring.reading import ScoringError, Source
from mlplatform_tests.serving.builders import Built
from mlplatform_tests.serving.test_parity import random_rows


def assert_same_feeds(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> None:
    assert list(got) == list(want)
    for name, expected in want.items():
        assert got[name].shape == expected.shape, name
        assert got[name].dtype == expected.dtype, name
        if expected.dtype == object:
            assert got[name].tolist() == expected.tolist(), name
        else:
            np.testing.assert_array_equal(got[name], expected, err_msg=name)


def text_cell(value: Any) -> str:
    return "" if value is None else str(value)


@pytest.mark.parametrize("key", ["a", "b"])
def test_feeds_of_dirty_text_equal_the_serving_inputs(built: Built, key: str) -> None:
    bundle = load(built.bundles_dir / built.bundles[key])
    rows = random_rows(built, 900, seed=3)
    columns = bundle.schema.feature_columns
    text = {c: [text_cell(r.get(c)) for r in rows] for c in columns}
    memo: dict[str, object] = {}
    for lo, hi in ((0, 300), (300, 900)):  # the date memo carries over from chunk to chunk
        part = {c: v[lo:hi] for c, v in text.items()}
        got = chunk_feeds(
            {c: pa.array(v, pa.string()) for c, v in part.items()}, bundle.schema, memo
        )
        assert_same_feeds(got.inputs, bundle.schema.model_inputs(part))


def test_feeds_of_typed_parquet_columns_equal_the_serving_inputs(built: Built) -> None:
    bundle = load(built.bundles_dir / built.bundles["a"])
    schema = bundle.schema
    n = 7
    typed: dict[str, pa.Array] = {}
    for name in schema.feature_columns:
        kind = schema.columns[name].type
        if kind in ("float", "int"):
            typed[name] = pa.array([3.0, None, 121.0, -1.0, 2.5, float("nan"), 0.0])
        elif kind == "bool":
            typed[name] = pa.array([True, False, None, True, True, False, None])
        elif kind == "date":
            days = [dt.date(2020, 1, 31), None, dt.date(2019, 7, 4)] + [dt.date(2021, 3, 1)] * 4
            typed[name] = pa.array(days, pa.date32())
        else:  # text with nulls (a Parquet string column), one dictionary-encoded
            values = pa.array(["basic", None, " premium ", "gold", "", "NA", "north"])
            typed[name] = values.dictionary_encode() if name == "region" else values
        assert len(typed[name]) == n
    got = chunk_feeds(typed, schema)
    want = schema.model_inputs({c: a.to_pylist() for c, a in typed.items()})
    assert_same_feeds(got.inputs, want)


def write_rows(path: Path, header: list[str], rows: list[list[str]], gaps: dict[int, str]) -> None:
    """A CSV of ``rows``; ``gaps[i]`` is written before data row i (blank lines, ...)."""
    with path.open("w", newline="") as fh:
        out = csv.writer(fh, lineterminator="\n")
        out.writerow(header)
        for i, row in enumerate(rows):
            fh.write(gaps.get(i, ""))
            out.writerow(row)


def clean_rows(bundle: Bundle, n: int) -> tuple[list[str], list[list[str]]]:
    """``n`` rows whose every feature value is valid."""
    good = {"float": "5", "int": "3", "bool": "yes", "date": "01/02/2020", "id": "x"}
    header = list(bundle.schema.feature_columns)
    row = []
    for name in header:
        column = bundle.schema.columns[name]
        row.append(column.values[0] if column.values else good[column.type])
    return header, [list(row) for _ in range(n)]


def test_a_bad_value_in_a_later_chunk_is_named_with_its_file_line(
    built: Built, tmp_path: Path
) -> None:
    bundle = load(built.bundles_dir / built.bundles["a"])
    header, rows = clean_rows(bundle, 400)
    tenure = header.index("tenure_months")
    rows[150][tenure] = "12abc"
    rows[390][tenure] = "x"
    source = tmp_path / "scored.csv"
    # blank lines and a \r\n line break before it: its line is not its row number + 2
    write_rows(source, header, rows, {20: "\n\n", 100: "\r\n", 140: "\n"})
    lines = source.read_text(encoding="utf-8").splitlines()
    line = next(i for i, text in enumerate(lines, start=1) if "12abc" in text)
    assert line != 150 + 2
    out = tmp_path / "out.parquet"
    with Source(source, bundle.schema.feature_columns, chunk_rows=64) as src:
        summary = score_file(bundle, src, out)
    assert summary.rows == 400
    assert summary.warnings(source, csv_lines=True) == [
        f"{source}: column 'tenure_months': 2 invalid value(s) scored as missing "
        f"(first at line {line})"
    ]
    assert pq.read_table(out).column("row").to_pylist() == list(range(400))


def test_a_ragged_row_after_the_first_block_is_named_by_the_exact_reader(
    built: Built, tmp_path: Path
) -> None:
    bundle = load(built.bundles_dir / built.bundles["a"])
    header, rows = clean_rows(bundle, 300_000)  # several 4 MiB blocks of the fast reader
    rows[290_000].append("extra")
    source = tmp_path / "big.csv"
    write_rows(source, header, rows, {})
    assert source.stat().st_size > 2 * (1 << 22)
    out = tmp_path / "out.parquet"
    out.write_bytes(b"before")
    with (
        pytest.raises(ScoringError, match=r"big\.csv: line 290002 has 9 field\(s\)"),
        Source(source, bundle.schema.feature_columns) as src,
    ):
        score_file(bundle, src, out)
    assert out.read_bytes() == b"before"
    assert list(tmp_path.glob(".out.parquet.*")) == []


def test_a_line_break_inside_a_value_is_scored_again_by_the_exact_reader(
    built: Built, tmp_path: Path
) -> None:
    bundle = load(built.bundles_dir / built.bundles["a"])
    header, rows = clean_rows(bundle, 200)
    plain, broken = tmp_path / "plain.csv", tmp_path / "broken.csv"
    write_rows(plain, header, rows, {})
    rows[120][header.index("plan")] = "prem\nium"  # quoted by the writer; invalid as a plan
    write_rows(broken, header, rows, {})
    with Source(plain, header, chunk_rows=64) as src:
        score_file(bundle, src, tmp_path / "plain.parquet")
    with Source(broken, header, chunk_rows=64) as src:
        summary = score_file(bundle, src, tmp_path / "broken.parquet")
        assert src.exact  # the fast reader gave up after scoring rows: all scored again
    assert summary.rows == 200
    assert summary.invalid == {"plan": 1}
    got, want = (
        pq.read_table(tmp_path / "broken.parquet"),
        pq.read_table(tmp_path / "plain.parquet"),
    )
    assert got.num_rows == 200
    assert got.slice(0, 120).equals(want.slice(0, 120))
    assert got.slice(121).equals(want.slice(121))
