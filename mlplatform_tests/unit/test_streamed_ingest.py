"""The streamed, vectorized ingest gives exactly what the exact Python reader gives, the raw
values are read by one set of rules everywhere (Arrow kernels, column parsers, serving's scalar
parsers), and a large file is ingested within a memory bound."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from mlplatform.columnar.kernels import parse_text
from mlplatform.columns import WHITESPACE, parse_column
from mlplatform.examples.generate import generate_frame
from mlplatform.serving.scalars import scalar_parser
from mlplatform.spec import Column, ProjectSpec, Quality, load_spec
from mlplatform.steps import ingest
from mlplatform.steps.partition_quality import QualityReport

SPEC_PATH = Path(__file__).resolve().parents[2] / "mlplatform" / "examples" / "churn.yaml"
ROOT = Path(__file__).resolve().parents[2]
FILE = "2024-01-01.csv"


@pytest.fixture(scope="module")
def spec() -> ProjectSpec:
    churn = load_spec(SPEC_PATH)
    quality = Quality(min_rows=5, max_invalid_fraction=0.02, allow_duplicate_rows=False)
    return churn.model_copy(update={"quality": quality})


@pytest.fixture(scope="module")
def text() -> str:
    """2,000 generated rows (with the generator's dirt) as CSV text."""
    frame = generate_frame(dt.date(2024, 1, 1), 2000, np.random.default_rng([3, 1]), 0, 1)
    return str(frame.to_csv(index=False, lineterminator="\n"))


def exact(path: Path, spec: ProjectSpec) -> tuple[pd.DataFrame, QualityReport, str]:
    """The exact, Python reader's answer."""
    frame, sha = ingest.read_landing(path, spec)
    typed, report = ingest.parse_partition(frame, spec, path)
    return typed, report, sha


def assert_same(path: Path, spec: ProjectSpec) -> QualityReport:
    typed, report, sha = ingest.ingest_landing(path, spec)
    want_typed, want, want_sha = exact(path, spec)
    assert sha == want_sha
    assert report.problems == want.problems
    assert report.rows == want.rows
    assert report.duplicate_lines == want.duplicate_lines
    assert {k: vars(v) for k, v in report.columns.items()} == {
        k: vars(v) for k, v in want.columns.items()
    }
    pd.testing.assert_frame_equal(typed, want_typed)
    return report


def _dirty(text: str) -> str:
    """Rows with bad values at known lines: the messages must name the same lines."""
    lines = text.splitlines()
    header = lines[0].split(",")
    for line, column, value in [
        (5, "monthly_charges", "abc"),
        (9, "churned", "maybe"),
        (40, "signup_date", "31/02/2024"),
        (41, "signup_date", "2024-01-05"),
        (77, "support_calls", "2.5"),
        (78, "autopay", "perhaps"),
        (79, "plan", "Basic"),
        (80, "tenure_months", " 1_000 "),
        (81, "tenure_months", "\u3000７\u2003"),
        (82, "monthly_charges", "NaN"),
        (83, "region", " N/A "),
        (84, "lifetime_value", "1e400"),
    ]:
        cells = lines[line - 1].split(",")
        cells[header.index(column)] = value
        lines[line - 1] = ",".join(cells)
    lines.insert(30, lines[20])  # a duplicated row
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    "variant",
    [
        "plain",
        "dirty",
        "crlf",
        "cr",
        "blank_lines",
        "no_final_newline",
        "bom",
        "quoted_values",
        "empty_row",
        "whitespace_line",
        "quoted_newline",
        "semicolons",
        "latin1",
    ],
)
def test_streamed_ingest_equals_the_exact_reader(
    variant: str, text: str, spec: ProjectSpec, tmp_path: Path
) -> None:
    body = _dirty(text)
    encoding = "utf-8"
    if variant == "crlf":
        body = body.replace("\n", "\r\n")
    elif variant == "cr":
        body = body.replace("\n", "\r")
    elif variant == "blank_lines":
        lines = body.split("\n")
        body = "\n\n" + "\n".join([*lines[:10], "", "", "", *lines[10:]])
    elif variant == "no_final_newline":
        body = body.rstrip("\n")
    elif variant == "bom":
        body = "\ufeff" + body
    elif variant == "quoted_values":
        body = body.replace(",basic,", ',"basic",').replace(",north,", ', "north" ,')
    elif variant == "empty_row":
        lines = body.split("\n")
        body = "\n".join([*lines[:7], ",,,,,,,,,,,", " , ,,,,,,,,,,", *lines[7:]])
    elif variant == "whitespace_line":
        lines = body.split("\n")
        body = "\n".join([*lines[:12], "   ", *lines[12:]])
    elif variant == "quoted_newline":
        body = body.replace(",premium,", ',"prem\nium",', 3)
    elif variant == "semicolons":
        body = body.replace(",", ";")
        spec = spec.model_copy(update={"data": spec.data.model_copy(update={"delimiter": ";"})})
    elif variant == "latin1":
        body = body.replace("C0", "Cé", 5)
        encoding = "latin-1"
        spec = spec.model_copy(
            update={"data": spec.data.model_copy(update={"encoding": "latin-1"})}
        )
    path = tmp_path / FILE
    path.write_bytes(body.encode(encoding, errors="replace"))
    report = assert_same(path, spec)
    if variant == "dirty":
        assert "line 9 'maybe'" in report.problems["target"][0]
        assert report.duplicate_lines == [31]


def test_large_file_spans_many_blocks(
    text: str, spec: ProjectSpec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Blocks and batches end anywhere: within a line, between \\r and \\n."""
    from mlplatform.columnar import csv_stream

    monkeypatch.setattr(csv_stream, "BLOCK", 4096 + 7)
    path = tmp_path / FILE
    path.write_bytes(_dirty(text).replace("\n", "\r\n").encode())
    assert_same(path, spec)


def test_refusals_keep_their_exact_messages(text: str, spec: ProjectSpec, tmp_path: Path) -> None:
    path = tmp_path / FILE
    lines = text.splitlines()
    lines[4] += ",surplus"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(ingest.DataError, match=r"malformed CSV.*\(line 5\)"):
        ingest.ingest_landing(path, spec)
    path.write_bytes(text.replace("C0", "C\xfc", 1).encode("latin-1"))
    with pytest.raises(ingest.DataError, match=r"not valid utf-8 text.*\(line 2\)"):
        ingest.ingest_landing(path, spec)
    path.write_text(lines[0] + "\n", encoding="utf-8")
    with pytest.raises(ingest.DataError, match="header only"):
        ingest.ingest_landing(path, spec)


# -- one set of raw-value rules -----------------------------------------------------------


def test_whitespace_is_what_str_strip_removes() -> None:
    assert set(WHITESPACE) == {c for c in map(chr, range(0x110000)) if c.isspace()}


SPACES = ["\u3000", "\xa0", "\x1c", "\u2003", "\t", "\x85"]
NA_SPELLINGS = ["NA", "na", "nA", "N/A", "n/a", "NULL", "Null", "None", "NONE", "NaN", "nat"]
NUMBERS = [
    "1", "-0", "+7", ".5", "5.", "1e3", "1E-2", "1_000", "٣", "７", "0x10", "1e400", "inf",
    "Infinity", "12abc", "1,5", "--3", "1.2.3", "2.0", "2.5", "00012", "9" * 40,
    "0.1000000000000000055511151231257827", "K", "ǅ",
]  # fmt: skip
BOOLS = ["true", "TRUE", "T", "yes", "Y", "1", "1.0", "false", "No", "0", "0.0", "ja", "2", "İ"]
DATES = [
    "01/01/2024", "29/02/2024", "29/02/2023", "31/12/9999", "01/01/0001", "1/2/2024",
    "00/01/2020", "32/01/2020", "31/04/2024", "01/13/2024", "2024-01-01", "01/01/24",
    "01/01/2024 ",
]  # fmt: skip


def _adversarial(pool: list[str]) -> list[str]:
    out = list(pool) + NA_SPELLINGS
    for s in SPACES:
        out += [f"{s}{v}{s}" for v in pool[:6] + NA_SPELLINGS[:3]]
    return out


CATEGORIES = [f"level{i}" for i in range(3000)]
COLUMNS: dict[str, tuple[Column, list[str]]] = {
    "float": (Column(type="float", min=0, max=100), _adversarial(NUMBERS)),
    "int": (Column(type="int", min=-5, max=50), _adversarial(NUMBERS)),
    "bool": (Column(type="bool"), _adversarial(BOOLS)),
    "date": (Column(type="date", format="%d/%m/%Y"), _adversarial(DATES)),
    "iso_date": (Column(type="date", format="%Y-%m-%d"), _adversarial(DATES)),
    "category": (
        Column(type="category", values=tuple(CATEGORIES)),
        _adversarial([*CATEGORIES[::7], "Level1", "level1 ", "level3000", "level-1"]),
    ),
    "open_category": (Column(type="category"), _adversarial(CATEGORIES[:2000])),
    "id": (Column(type="id"), _adversarial(["C1", " C2", "c3 "])),
}


def _plain(values: Any) -> list[Any]:
    if isinstance(values, pa.Array):
        return values.to_pylist()
    if values.dtype.kind == "M":
        return [None if np.isnat(v) else v.astype("datetime64[D]").item() for v in values]
    if values.dtype == object:
        return list(values)
    return [None if np.isnan(v) else float(v) for v in values]


@pytest.mark.parametrize("kind", list(COLUMNS))
def test_kernels_column_parsers_and_scalar_parsers_agree(kind: str) -> None:
    column, pool = COLUMNS[kind]
    by_column = parse_column(pool, column)
    by_kernel = parse_text(pa.array(pool, pa.string()), column)
    for mask in ("missing", "invalid", "out_of_range"):
        np.testing.assert_array_equal(getattr(by_kernel, mask), getattr(by_column, mask), mask)
    assert by_kernel.reason == by_column.reason
    assert _plain(by_kernel.values) == _plain(by_column.values)
    parse = scalar_parser(column)
    for value, want, invalid in zip(pool, _plain(by_column.values), by_column.invalid, strict=True):
        got, reason = parse(value)
        assert (reason is not None) == bool(invalid), value
        assert (reason or by_column.reason) == by_column.reason
        assert got == want, value


CASTABLE = ["+1", "-inf", "+inf", "nan(1)", "1E+05", "1e-400", "4.9e-324", "1" + "0" * 400]


@pytest.mark.parametrize("kind", ["float", "int"])
def test_numbers_a_whole_chunk_casts_agree_with_the_rules(kind: str) -> None:
    """A chunk whose every present cell Arrow's cast reads skips the number pattern: each
    spelling alone (with a missing cell) gives what the column parser gives."""
    column, pool = COLUMNS[kind]
    for value in [*pool, *CASTABLE]:
        cells = [value, "NA", "2"]
        by_column = parse_column(cells, column)
        by_kernel = parse_text(pa.array(cells, pa.string()), column)
        for mask in ("missing", "invalid", "out_of_range"):
            np.testing.assert_array_equal(
                getattr(by_kernel, mask), getattr(by_column, mask), f"{mask} {value!r}"
            )
        assert _plain(by_kernel.values) == _plain(by_column.values), value


# -- memory --------------------------------------------------------------------------------

MEMORY_CHILD = """
import sys
from pathlib import Path
from mlplatform.spec import load_spec
from mlplatform.steps.ingest import ingest_landing

def hwm():
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))

spec = load_spec(Path(sys.argv[1]))
spec = spec.model_copy(update={"data": spec.data.model_copy(update={"max_file_mb": 1024})})
ingest_landing(Path(sys.argv[2]), spec)  # warm up: libraries, thread pools, kernels
base = hwm()
typed, report, sha = ingest_landing(Path(sys.argv[3]), spec)
print(base, hwm(), report.rows)
"""


def test_a_200_mb_file_is_ingested_within_base_plus_four_times_its_size(
    text: str, tmp_path: Path
) -> None:
    small = tmp_path / "small.csv"
    small.write_text(text, encoding="utf-8")
    header, _, body = text.partition("\n")
    big = tmp_path / "big.csv"
    copies = 0
    with big.open("w", encoding="utf-8") as fh:
        fh.write(header + "\n")
        while fh.tell() < 200 << 20:
            fh.write(body.replace("\nC", f"\nC{copies:05d}-"))
            copies += 1
    size = big.stat().st_size
    done = subprocess.run(
        [sys.executable, "-c", MEMORY_CHILD, str(SPEC_PATH), str(small), str(big)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 0, done.stderr
    base_kib, peak_kib, rows = map(int, done.stdout.split())
    assert rows == copies * (len(text.splitlines()) - 1)
    print(f"peak above base: {(peak_kib - base_kib) * 1024 / size:.2f}x the file")
    assert (peak_kib - base_kib) * 1024 <= 4 * size, (base_kib, peak_kib, size)


def test_features_of_a_streamed_partition_follow_derive_features(
    text: str, spec: ProjectSpec, tmp_path: Path
) -> None:
    """build_features keeps category columns as Arrow strings; the values are still exactly
    what ``columns.derive_features`` (the bundle's code) makes of the same typed columns."""
    from mlplatform.columns import derive_features
    from mlplatform.steps.features import build_features, target_values

    path = tmp_path / FILE
    path.write_text(_dirty(text), encoding="utf-8")
    typed, _, _ = ingest.ingest_landing(path, spec)
    got = build_features(typed, spec)
    parsed = {name: typed[name].to_numpy() for name in spec.feature_columns}
    want = pd.DataFrame(derive_features(parsed, spec.columns, spec.features, spec.feature_columns))
    want[spec.target] = target_values(typed[spec.target], spec)
    want = want.loc[want[spec.target].notna().to_numpy()].reset_index(drop=True)
    pd.testing.assert_frame_equal(got, want)


def test_a_file_that_grows_past_the_limit_while_streamed_is_refused(
    text: str, spec: ProjectSpec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The size was judged before reading; the tap still counts every byte it reads (here the
    stream's limit shrinks to max_file_mb bytes, as if the file had grown meanwhile)."""
    path = tmp_path / FILE
    path.write_text(text, encoding="utf-8")
    monkeypatch.setattr(ingest, "MB", 1)
    with pytest.raises(ingest.DataError, match=r"grew past data.max_file_mb=256 while it was read"):
        ingest.ingest_landing(path, spec)
