"""``columnar.csv_columns``: the chosen columns of a CSV as Arrow text, every row kept, each
with the file line Python's csv module gives it; what it cannot read exactly is refused."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from mlplatform.columnar.csv_columns import text_columns
from mlplatform.columnar.csv_stream import NotPlainError, header

TEXT = (
    "id,plan,score,note\r\n"
    "1,basic,3.5,a\r\n"
    "\r\n"
    '2," premium ",,"x, y"\n'
    "\n\n"
    ",,,\r"
    "4,gold,NA,z\n"
    "5,basic,7,"
)


def exact(text: str, columns: list[str]) -> tuple[list[list[str]], list[int]]:
    """Cells and lines of non-empty rows by Python's csv module."""
    reader = csv.reader(io.StringIO(text, newline=""))
    names = next(reader)
    rows, lines = [], []
    for row in reader:
        if row:
            rows.append([row[names.index(c)] for c in columns])
            lines.append(reader.line_num)
    return rows, lines


def read(path: Path, columns: list[str]) -> tuple[list[list[str]], list[int]]:
    rows: list[list[str]] = []
    lines: list[int] = []
    with path.open("rb") as fh:
        names = header(fh, "utf-8", ",")
        for batch, numbers in text_columns(fh, "utf-8", ",", names, columns):
            assert batch.schema.names == columns
            rows += [list(r) for r in zip(*(c.to_pylist() for c in batch.columns), strict=True)]
            lines += numbers.tolist()
    return rows, lines


def test_rows_cells_and_lines_equal_the_csv_module(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_bytes(TEXT.encode())
    columns = ["score", "plan"]
    got = read(path, columns)
    assert got == exact(TEXT, columns)
    assert got[1] == [2, 4, 7, 8, 9]  # the all-empty row is kept (scored as missing values)


@pytest.mark.parametrize(
    "text",
    ['id,plan\n1,"two\nlines"\n', "id,plan\n1,basic,extra\n", "id,plan\n1,caf\xe9\n"],
    ids=["newline-in-value", "ragged", "not-utf8"],
)
def test_what_it_cannot_read_exactly_is_refused(text: str, tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_bytes(text.encode("latin-1"))
    with pytest.raises(NotPlainError):
        read(path, ["plan"])
