"""Bad landing files: each one is refused with a message naming file, column, line and reason.

Line numbers are file lines: the header is line 1, so data row ``i`` (0-based) is line ``i + 2``.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlplatform.examples.generate import generate_frame
from mlplatform.spec import Column, DataSource, ProjectSpec, Quality, load_spec
from mlplatform.steps.ingest import DataError, parse_partition, read_landing_file
from mlplatform.steps.partition_quality import QualityReport

SPEC_PATH = Path(__file__).resolve().parents[2] / "mlplatform" / "examples" / "churn.yaml"
ROWS = 50
FILE = "2024-01-01.csv"

# A valid replacement for a dirty value the generator writes on purpose.
GOOD = {
    "tenure_months": "12",
    "monthly_charges": "42.50",
    "support_calls": "1",
    "plan": "basic",
    "region": "north",
    "payment_method": "card",
}


# ---------------------------------------------------------------------------- helpers


def _valid(value: str, column: Column) -> bool:
    """Independent of the code under test: is a raw cell clean (or simply missing)?"""
    if value == "":
        return True
    if column.type in ("float", "int"):
        if value != value.strip():
            return False
        x = float(value)
        lo = -np.inf if column.min is None else column.min
        hi = np.inf if column.max is None else column.max
        return lo <= x <= hi
    if column.type == "category" and column.values is not None:
        return value in column.values
    return True


@pytest.fixture(scope="module")
def churn() -> ProjectSpec:
    return load_spec(SPEC_PATH)


@pytest.fixture(scope="module")
def spec(churn: ProjectSpec) -> ProjectSpec:
    """The churn spec with a row minimum a 50-row file can meet."""
    quality = Quality(min_rows=5, max_invalid_fraction=0.02, allow_duplicate_rows=False)
    return churn.model_copy(update={"quality": quality})


@pytest.fixture(scope="module")
def clean_frame(spec: ProjectSpec) -> pd.DataFrame:
    """50 generated rows with the generator's deliberate dirt replaced by valid values."""
    frame = generate_frame(dt.date(2024, 1, 1), ROWS, np.random.default_rng([7, 0]), 0, 1)
    for name, good in GOOD.items():
        bad = ~frame[name].map(lambda v, c=spec.columns[name]: _valid(v, c))
        frame.loc[bad, name] = good
    assert list(frame.columns) == list(spec.columns)
    assert not frame["churned"].eq("").any()
    return frame


@pytest.fixture
def base(clean_frame: pd.DataFrame) -> pd.DataFrame:
    return clean_frame.copy()


def _write(frame: pd.DataFrame, folder: Path, name: str = FILE, encoding: str = "utf-8") -> Path:
    path = folder / name
    frame.to_csv(path, index=False, lineterminator="\n", encoding=encoding)
    return path


def _lines(frame: pd.DataFrame) -> list[str]:
    return frame.to_csv(index=False, lineterminator="\n").splitlines()


def _write_lines(lines: list[str], folder: Path, name: str = FILE) -> Path:
    path = folder / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _check(path: Path, spec: ProjectSpec) -> tuple[pd.DataFrame, QualityReport]:
    frame = read_landing_file(path, spec)
    return parse_partition(frame, spec, path)


def _refused(path: Path, spec: ProjectSpec) -> DataError:
    with pytest.raises(DataError) as info:
        read_landing_file(path, spec)
    exc = info.value
    assert exc.file == path
    assert str(path) in str(exc)
    return exc


def _only_problem(report: QualityReport, check: str) -> str:
    """The single problem of a report, which must come from ``check``."""
    found = {name: msgs for name, msgs in report.problems.items() if msgs}
    assert list(found) == [check], report.problems
    assert len(found[check]) == 1, found[check]
    assert not report.passed
    return found[check][0]


# ---------------------------------------------------------------------------- the clean base


def test_clean_base_passes(base: pd.DataFrame, spec: ProjectSpec, tmp_path: Path) -> None:
    path = _write(base, tmp_path)
    typed, report = _check(path, spec)
    assert report.passed, report.problems
    assert report.rows == ROWS
    assert report.file == path
    assert report.duplicate_lines == []
    assert all(cq.invalid == 0 and cq.out_of_range == 0 for cq in report.columns.values())
    assert list(typed.columns) == list(spec.columns)


# ---------------------------------------------------------------------------- unreadable files


def test_missing_file(spec: ProjectSpec, tmp_path: Path) -> None:
    exc = _refused(tmp_path / FILE, spec)
    assert "does not exist" in exc.reason


def test_missing_column(base: pd.DataFrame, spec: ProjectSpec, tmp_path: Path) -> None:
    path = _write(base.drop(columns=["plan"]), tmp_path)
    exc = _refused(path, spec)
    assert "missing column(s) plan" in str(exc)
    assert "spec declares" in exc.reason


def test_several_missing_columns_are_all_named(
    base: pd.DataFrame, spec: ProjectSpec, tmp_path: Path
) -> None:
    path = _write(base.drop(columns=["region", "autopay"]), tmp_path)
    exc = _refused(path, spec)
    assert "region" in exc.reason and "autopay" in exc.reason


def test_extra_column(base: pd.DataFrame, spec: ProjectSpec, tmp_path: Path) -> None:
    base.insert(3, "notes", "free text")
    path = _write(base, tmp_path)
    exc = _refused(path, spec)
    assert "unexpected column(s) notes" in str(exc)
    assert "declare them in the spec" in exc.reason


def test_column_repeated_in_header(base: pd.DataFrame, spec: ProjectSpec, tmp_path: Path) -> None:
    lines = _lines(base)
    lines = [lines[0] + ",plan"] + [line + ",basic" for line in lines[1:]]
    path = _write_lines(lines, tmp_path)
    exc = _refused(path, spec)
    assert exc.column == "plan"
    assert "column 'plan'" in str(exc)
    assert "appears twice" in exc.reason


def test_column_repeated_with_padding_in_header(
    base: pd.DataFrame, spec: ProjectSpec, tmp_path: Path
) -> None:
    lines = _lines(base)
    lines = [lines[0] + ", plan "] + [line + ",basic" for line in lines[1:]]
    path = _write_lines(lines, tmp_path)
    exc = _refused(path, spec)
    assert exc.column == "plan"
    assert "appears twice" in exc.reason


def test_empty_file(spec: ProjectSpec, tmp_path: Path) -> None:
    path = tmp_path / FILE
    path.write_bytes(b"")
    exc = _refused(path, spec)
    assert "empty file" in exc.reason


def test_whitespace_only_file(spec: ProjectSpec, tmp_path: Path) -> None:
    path = tmp_path / FILE
    path.write_bytes(b"\n\n")
    exc = _refused(path, spec)
    assert "empty file" in exc.reason


@pytest.mark.parametrize("newline", ["\n", ""])
def test_header_only(base: pd.DataFrame, spec: ProjectSpec, tmp_path: Path, newline: str) -> None:
    path = tmp_path / FILE
    path.write_text(",".join(base.columns) + newline, encoding="utf-8")
    exc = _refused(path, spec)
    assert "header only" in exc.reason
    assert "no data rows" in exc.reason


def test_ragged_row_with_too_many_fields(
    base: pd.DataFrame, spec: ProjectSpec, tmp_path: Path
) -> None:
    lines = _lines(base)
    lines[4] += ",surplus"  # file line 5
    path = _write_lines(lines, tmp_path)
    exc = _refused(path, spec)
    assert "malformed CSV" in exc.reason
    assert "line 5" in str(exc)


def test_ragged_row_with_too_few_fields(
    base: pd.DataFrame, spec: ProjectSpec, tmp_path: Path
) -> None:
    lines = _lines(base)
    lines[6] = lines[6].rsplit(",", 1)[0]  # file line 7 loses its last field
    path = _write_lines(lines, tmp_path)
    try:
        _, report = _check(path, spec)
    except DataError as exc:
        assert "line 7" in str(exc)
    else:
        assert not report.passed
        assert any("line 7" in msg for msgs in report.problems.values() for msg in msgs)


def test_trailing_delimiter_on_every_row_does_not_shift_columns(
    base: pd.DataFrame, spec: ProjectSpec, tmp_path: Path
) -> None:
    """Either refuse the file or read it unshifted; never move every value one column left."""
    lines = _lines(base)
    lines = [lines[0]] + [line + "," for line in lines[1:]]
    path = _write_lines(lines, tmp_path)
    try:
        frame = read_landing_file(path, spec)
    except DataError as exc:
        assert "line 2" in str(exc)
    else:
        first = frame.iloc[0].tolist()
        assert first == base.iloc[0].tolist(), f"row at line 2 read as {first}"


def test_utf8_with_bom_reads_fine(base: pd.DataFrame, spec: ProjectSpec, tmp_path: Path) -> None:
    path = _write(base, tmp_path, encoding="utf-8-sig")
    assert path.read_bytes().startswith(b"\xef\xbb\xbfcustomer_id,")
    frame = read_landing_file(path, spec)
    assert list(frame.columns) == list(spec.columns)
    assert frame.columns[0] == "customer_id"
    assert frame["customer_id"].tolist() == base["customer_id"].tolist()
    _, report = parse_partition(frame, spec, path)
    assert report.passed, report.problems


def _latin1_file(base: pd.DataFrame, folder: Path) -> Path:
    base.loc[4, "customer_id"] = "C-Zürich"  # file line 6
    return _write(base, folder, encoding="latin-1")


def test_latin1_file_refused_when_spec_says_utf8(
    base: pd.DataFrame, spec: ProjectSpec, tmp_path: Path
) -> None:
    path = _latin1_file(base, tmp_path)
    exc = _refused(path, spec)
    assert "not valid utf-8 text" in exc.reason
    assert "data.encoding" in exc.reason
    assert "latin-1" in exc.reason
    assert exc.rows == "line 6"
    assert "(line 6)" in str(exc)


def test_latin1_file_reads_when_spec_says_latin1(
    base: pd.DataFrame, spec: ProjectSpec, tmp_path: Path
) -> None:
    path = _latin1_file(base, tmp_path)
    data = spec.data.model_copy(update={"encoding": "latin-1"})
    latin = spec.model_copy(update={"data": data})
    typed, report = _check(path, latin)
    assert report.passed, report.problems
    assert typed["customer_id"][4] == "C-Zürich"


def test_truncated_parquet(base: pd.DataFrame, spec: ProjectSpec, tmp_path: Path) -> None:
    data = DataSource(landing=str(tmp_path), format="parquet", filename="{partition}.parquet")
    pq_spec = spec.model_copy(update={"data": data})
    path = pq_spec.landing_file(tmp_path, "2024-01-01")
    base.to_parquet(path, index=False)
    whole = read_landing_file(path, pq_spec)  # the intact file reads
    assert whole["customer_id"].tolist() == base["customer_id"].tolist()
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    exc = _refused(path, pq_spec)
    assert "Parquet" in exc.reason
    assert "truncated or corrupt" in exc.reason


# ---------------------------------------------------------------------------- quality problems


@pytest.mark.parametrize(
    ("column", "value", "reason"),
    [
        ("monthly_charges", "abc", "not a number"),
        ("support_calls", "2.5", "not a whole number"),
        ("autopay", "maybe", "not true/false"),
    ],
)
def test_wrong_type(
    base: pd.DataFrame, spec: ProjectSpec, tmp_path: Path, column: str, value: str, reason: str
) -> None:
    base.loc[5:, column] = value  # rows 5.. -> file lines 7..
    path = _write(base, tmp_path)
    typed, report = _check(path, spec)
    msg = _only_problem(report, "schema")
    assert f"column {column!r}" in msg
    assert reason in msg
    assert f"{ROWS - 5} of {ROWS} values" in msg
    assert "max_invalid_fraction=0.02" in msg
    assert f"line 7 {value!r}" in msg
    assert report.file == path
    assert report.columns[column].invalid == ROWS - 5
    assert typed[column].iloc[5:].isna().all()


def test_unparseable_date(base: pd.DataFrame, spec: ProjectSpec, tmp_path: Path) -> None:
    base.loc[2:, "signup_date"] = "2024-99-99"
    path = _write(base, tmp_path)
    typed, report = _check(path, spec)
    msg = _only_problem(report, "schema")
    assert "column 'signup_date'" in msg
    assert "not a %d/%m/%Y date" in msg
    assert "line 4 '2024-99-99'" in msg
    assert typed["signup_date"].iloc[2:].isna().all()
    assert typed["signup_date"].iloc[:2].notna().all()


def test_iso_dates_when_spec_wants_day_first(
    base: pd.DataFrame, spec: ProjectSpec, tmp_path: Path
) -> None:
    iso = pd.to_datetime(base["signup_date"], format="%d/%m/%Y").dt.strftime("%Y-%m-%d")
    base["signup_date"] = iso
    path = _write(base, tmp_path)
    _, report = _check(path, spec)
    msg = _only_problem(report, "schema")
    assert "column 'signup_date'" in msg
    assert f"{ROWS} of {ROWS} values" in msg
    assert "%d/%m/%Y" in msg
    assert f"line 2 {iso[0]!r}" in msg


def test_duplicated_rows_refused(base: pd.DataFrame, spec: ProjectSpec, tmp_path: Path) -> None:
    frame = pd.concat([base, base.iloc[[3]], base.iloc[[10]]], ignore_index=True)
    path = _write(frame, tmp_path)
    _, report = _check(path, spec)
    msg = _only_problem(report, "row_count")
    last = ROWS + 1  # file line of the last original row
    assert report.duplicate_lines == [last + 1, last + 2]
    assert f"2 duplicated row(s) at line(s) {last + 1}, {last + 2}" in msg
    assert "quality.allow_duplicate_rows" in msg


def test_duplicated_rows_allowed(base: pd.DataFrame, spec: ProjectSpec, tmp_path: Path) -> None:
    frame = pd.concat([base.iloc[:7], base.iloc[[3]], base.iloc[7:]], ignore_index=True)
    path = _write(frame, tmp_path)
    allowing = spec.model_copy(
        update={"quality": spec.quality.model_copy(update={"allow_duplicate_rows": True})}
    )
    typed, report = _check(path, allowing)
    assert report.passed, report.problems
    assert report.duplicate_lines == [9]  # the copy sits at row 7 -> file line 9
    assert len(typed) == ROWS + 1


def test_too_few_rows(base: pd.DataFrame, spec: ProjectSpec, tmp_path: Path) -> None:
    path = _write(base.iloc[:4], tmp_path)
    _, report = _check(path, spec)
    msg = _only_problem(report, "row_count")
    assert "4 rows, fewer than quality.min_rows=5" in msg


def test_out_of_range_above_threshold(
    base: pd.DataFrame, spec: ProjectSpec, tmp_path: Path
) -> None:
    rows = [3, 11, 20, 21, 40]
    base.loc[rows, "tenure_months"] = ["121", "500", "-1", "999", "130"]
    path = _write(base, tmp_path)
    typed, report = _check(path, spec)
    msg = _only_problem(report, "ranges")
    assert "column 'tenure_months'" in msg
    assert "5 of 50 values (10.0%)" in msg
    assert "outside [0.0, 120.0]" in msg
    assert "line 5 '121'" in msg and "line 42 '130'" in msg
    assert report.columns["tenure_months"].out_of_range == 5
    assert report.columns["tenure_months"].invalid == 0
    # Out-of-range numbers are kept in the typed frame; the feature rules clip or drop them.
    assert typed["tenure_months"][rows].tolist() == [121.0, 500.0, -1.0, 999.0, 130.0]


def test_out_of_range_with_no_max(base: pd.DataFrame, spec: ProjectSpec, tmp_path: Path) -> None:
    base.loc[:9, "lifetime_value"] = "-3.50"
    path = _write(base, tmp_path)
    _, report = _check(path, spec)
    msg = _only_problem(report, "ranges")
    assert "column 'lifetime_value'" in msg
    assert "outside [0.0, None]" in msg
    assert "line 2 '-3.50'" in msg


@pytest.mark.parametrize("value", ["", "NA", "maybe", "Yes"])
def test_bad_target_in_one_row(
    base: pd.DataFrame, spec: ProjectSpec, tmp_path: Path, value: str
) -> None:
    base.loc[6, "churned"] = value  # file line 8
    path = _write(base, tmp_path)
    _, report = _check(path, spec)
    msg = _only_problem(report, "target")
    assert "target column 'churned'" in msg
    assert "1 missing or invalid value(s)" in msg
    assert f"line 8 {value!r}" in msg


def test_unseen_category_above_threshold(
    base: pd.DataFrame, spec: ProjectSpec, tmp_path: Path
) -> None:
    base.loc[[0, 9, 19, 29], "region"] = "northeast"
    path = _write(base, tmp_path)
    typed, report = _check(path, spec)
    msg = _only_problem(report, "ranges")
    assert "column 'region'" in msg
    assert "4 of 50 values (8.0%)" in msg
    assert "not one of north, south, east, west" in msg
    assert "line 2 'northeast'" in msg and "line 31 'northeast'" in msg
    assert typed["region"][[0, 9, 19, 29]].isna().all()


def test_dirty_values_below_threshold_pass_and_become_missing(
    base: pd.DataFrame, spec: ProjectSpec, tmp_path: Path
) -> None:
    lenient = spec.model_copy(
        update={"quality": spec.quality.model_copy(update={"max_invalid_fraction": 0.05})}
    )
    base.loc[[4, 30], "monthly_charges"] = ["abc", "12,50"]  # 2 of 50 = 4%
    base.loc[7, "plan"] = "gold"
    base.loc[8, "region"] = "North"
    base.loc[12, "autopay"] = "perhaps"
    base.loc[13, "signup_date"] = "31/02/2024"
    base.loc[14, "support_calls"] = "1.5"
    base.loc[15, "tenure_months"] = "121"  # out of range: counted, kept
    path = _write(base, tmp_path)
    typed, report = _check(path, lenient)
    assert report.passed, report.problems
    assert report.columns["monthly_charges"].invalid == 2
    assert report.columns["monthly_charges"].examples == ["line 6 'abc'", "line 32 '12,50'"]
    assert report.columns["plan"].invalid == 1
    assert report.columns["tenure_months"].out_of_range == 1
    assert typed["monthly_charges"][[4, 30]].isna().all()
    assert typed["monthly_charges"].notna().sum() == (base["monthly_charges"] != "").sum() - 2
    assert pd.isna(typed["plan"][7])
    assert pd.isna(typed["region"][8])
    assert typed["plan"].notna().sum() == ROWS - 1
    assert np.isnan(typed["autopay"][12])
    assert pd.isna(typed["signup_date"][13])
    assert np.isnan(typed["support_calls"][14])
    assert typed["tenure_months"][15] == 121.0


def test_one_dirty_value_in_fifty_is_at_the_threshold(
    base: pd.DataFrame, spec: ProjectSpec, tmp_path: Path
) -> None:
    base.loc[4, "monthly_charges"] = "abc"  # exactly 2% is not above 2%
    path = _write(base, tmp_path)
    _, report = _check(path, spec)
    assert report.passed, report.problems
    base.loc[5, "monthly_charges"] = "xyz"  # 4% is
    path = _write(base, tmp_path)
    _, report = _check(path, spec)
    assert "line 6 'abc'" in _only_problem(report, "schema")


def test_line_numbers_count_blank_lines(
    base: pd.DataFrame, spec: ProjectSpec, tmp_path: Path
) -> None:
    """A blank line is still a file line: the bad target below it is on file line 10."""
    base.loc[7, "churned"] = "maybe"  # file line 9 without the blank line
    lines = _lines(base)
    lines.insert(4, "")  # a blank file line 5
    path = _write_lines(lines, tmp_path)
    assert path.read_text(encoding="utf-8").splitlines()[9].endswith(",maybe")
    _, report = _check(path, spec)
    msg = _only_problem(report, "target")
    assert "line 10 'maybe'" in msg


# ---------------------------------------------------------------------------- missingness


def test_column_with_a_fifth_missing_is_refused_naming_file_column_share_and_limit(
    base: pd.DataFrame, spec: ProjectSpec, tmp_path: Path
) -> None:
    base.loc[: ROWS // 5 - 1, "monthly_charges"] = "n/a"  # 20% of a nullable float column
    missing = int((base["monthly_charges"].isin(["", "n/a"])).sum())
    path = _write(base, tmp_path)
    _, report = _check(path, spec)
    msg = _only_problem(report, "schema")
    assert msg.startswith("column 'monthly_charges':")
    assert f"{missing} of {ROWS} values ({missing / ROWS:.1%}) are missing in {FILE}" in msg
    assert "above quality.max_missing_fraction=0.15" in msg
    assert "columns.monthly_charges.max_missing_fraction" in msg  # what to change
    assert report.columns["monthly_charges"].missing == missing


def test_column_limit_overrides_the_project_default(
    base: pd.DataFrame, spec: ProjectSpec, tmp_path: Path
) -> None:
    base.loc[: ROWS // 5 - 1, "monthly_charges"] = ""
    path = _write(base, tmp_path)
    columns = dict(spec.columns)
    columns["monthly_charges"] = columns["monthly_charges"].model_copy(
        update={"max_missing_fraction": 0.5}
    )
    _, report = _check(path, spec.model_copy(update={"columns": columns}))
    assert report.passed, report.problems
    columns["region"] = columns["region"].model_copy(update={"max_missing_fraction": 0.0})
    base.loc[ROWS - 1, "region"] = "NA"
    _, report = _check(_write(base, tmp_path), spec.model_copy(update={"columns": columns}))
    msg = _only_problem(report, "schema")
    assert "column 'region'" in msg and "above columns.region.max_missing_fraction=0.0" in msg
