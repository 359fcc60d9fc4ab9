"""Tests for the seeded churn example data generator."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlplatform.examples.generate import generate_example, generate_frame
from mlplatform.spec import ProjectSpec, load_spec

SPEC_PATH = Path(__file__).resolve().parents[2] / "mlplatform" / "examples" / "churn.yaml"


@pytest.fixture(scope="module")
def spec() -> ProjectSpec:
    return load_spec(SPEC_PATH)


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """4 months x 300 rows with the default seed."""
    return generate_example(tmp_path_factory.mktemp("small"), months=4, rows_per_month=300)


def _read(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")


def _read_all(paths: list[Path]) -> pd.DataFrame:
    return pd.concat([_read(p) for p in paths], ignore_index=True)


def test_same_seed_gives_identical_bytes(small: list[Path], tmp_path: Path) -> None:
    again = generate_example(tmp_path, months=4, rows_per_month=300)
    assert [p.read_bytes() for p in again] == [p.read_bytes() for p in small]


def test_different_seed_gives_different_data(small: list[Path], tmp_path: Path) -> None:
    other = generate_example(tmp_path, months=4, rows_per_month=300, seed=8)
    assert all(a.read_bytes() != b.read_bytes() for a, b in zip(other, small, strict=True))


def test_month_draws_do_not_depend_on_run_length(tmp_path: Path) -> None:
    short = generate_example(tmp_path / "short", months=3, rows_per_month=200)
    long = generate_example(tmp_path / "long", months=30, rows_per_month=200)
    # The first two months lie before the drift (last third) in both runs.
    assert [p.read_bytes() for p in short[:2]] == [p.read_bytes() for p in long[:2]]
    assert short[2].read_bytes() != long[2].read_bytes()  # drifted in the short run


def test_file_names_are_sorted_month_starts(tmp_path: Path) -> None:
    paths = generate_example(tmp_path, start=dt.date(2023, 11, 1), months=4, rows_per_month=100)
    assert [p.name for p in paths] == [
        "2023-11-01.csv",
        "2023-12-01.csv",
        "2024-01-01.csv",
        "2024-02-01.csv",
    ]
    assert all(p.parent == tmp_path for p in paths)
    assert sorted(p.name for p in tmp_path.iterdir()) == [p.name for p in paths]  # no temp files


def test_columns_match_spec(small: list[Path], spec: ProjectSpec) -> None:
    for path in small:
        assert list(_read(path).columns) == list(spec.columns)
        assert len(_read(path)) == 300


def test_frame_columns_match_spec(spec: ProjectSpec) -> None:
    frame = generate_frame(dt.date(2024, 5, 1), 50, np.random.default_rng(1), 0, 12)
    assert list(frame.columns) == list(spec.columns)
    assert len(frame) == 50


def test_churn_rate_is_imbalanced(small: list[Path]) -> None:
    churned = _read_all(small)["churned"]
    rate = (churned == "yes").mean()
    assert 0.05 <= rate <= 0.25


def test_targets_never_missing_or_unknown(small: list[Path], spec: ProjectSpec) -> None:
    df = _read_all(small)
    assert set(df["churned"]) <= set(spec.columns["churned"].values or ())
    assert set(df["segment"]) <= set(spec.columns["segment"].values or ())
    ltv = pd.to_numeric(df["lifetime_value"], errors="coerce")
    assert ltv.notna().all() and (ltv >= 0).all()


def test_no_duplicate_rows(small: list[Path]) -> None:
    df = _read_all(small)
    assert not df.duplicated().any()
    for path in small:
        assert _read(path)["customer_id"].is_unique


def test_ids_and_dates_are_well_formed(small: list[Path]) -> None:
    for path in small:
        df = _read(path)
        assert df["customer_id"].str.fullmatch(r"C\d{6}").all()
        signup = pd.to_datetime(df["signup_date"], format="%d/%m/%Y")
        month = pd.Timestamp(path.stem)
        assert (signup < month).all()


def test_some_missing_values(small: list[Path]) -> None:
    df = _read_all(small)
    for col in ("tenure_months", "monthly_charges", "payment_method", "region"):
        share = (df[col] == "").mean()
        assert 0.005 < share < 0.08, col


def _invalid(df: pd.DataFrame, spec: ProjectSpec, name: str) -> pd.Series:
    """Non-missing values that do not parse, are out of range or are unknown categories."""
    col = spec.columns[name]
    raw = df[name]
    present = raw != ""
    if col.type in ("float", "int"):
        num = pd.to_numeric(raw.str.strip(), errors="coerce")
        bad = num.isna()
        if col.min is not None:
            bad |= num < col.min
        if col.max is not None:
            bad |= num > col.max
        return present & bad
    if col.type == "category":
        return present & ~raw.isin(col.values or ())
    return pd.Series(False, index=df.index)


def test_some_dirt_present(small: list[Path], spec: ProjectSpec) -> None:
    df = _read_all(small)
    total = sum(int(_invalid(df, spec, name).sum()) for name in spec.columns)
    assert total > 0


def test_dirt_stays_below_quality_threshold(tmp_path: Path, spec: ProjectSpec) -> None:
    paths = generate_example(tmp_path, months=3, rows_per_month=2000)
    limit = spec.quality.max_invalid_fraction
    for path in paths:
        df = _read(path)
        for name in spec.columns:
            assert _invalid(df, spec, name).mean() < limit / 2, (path.name, name)


def test_later_months_drift(tmp_path: Path) -> None:
    paths = generate_example(tmp_path, months=12, rows_per_month=500)

    def month_stats(path: Path) -> tuple[float, float]:
        df = _read(path)
        charges = pd.to_numeric(df["monthly_charges"].str.strip(), errors="coerce")
        charges = charges[charges > 0]
        return float(charges.mean()), float((df["payment_method"] == "paypal").mean())

    first_charges, first_paypal = month_stats(paths[0])
    last_charges, last_paypal = month_stats(paths[-1])
    assert last_charges > first_charges * 1.05
    assert last_paypal > first_paypal


def test_months_beyond_a_chunk_are_streamed_with_unique_ids(
    tmp_path: Path, spec: ProjectSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Millions of rows are written chunk by chunk (here chunks of 700 rows stand in for
    CHUNK_ROWS): one header, every row, unique customer ids, the same bytes again."""
    from mlplatform.examples import generate

    monkeypatch.setattr(generate, "CHUNK_ROWS", 700)
    (path,) = generate_example(tmp_path / "a", months=1, rows_per_month=2_500)
    frame = _read(path)
    assert len(frame) == 2_500
    assert list(frame.columns) == list(spec.columns)
    assert frame["customer_id"].is_unique
    assert path.read_text(encoding="utf-8").count("customer_id") == 1
    (again,) = generate_example(tmp_path / "b", months=1, rows_per_month=2_500)
    assert again.read_bytes() == path.read_bytes()


def test_bad_row_counts_are_one_line_errors(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from mlplatform.cli import app

    with pytest.raises(ValueError, match=r"between 1 and 50,000,000, got 60,000,000"):
        generate_example(tmp_path, months=1, rows_per_month=60_000_000)
    for rows in ("0", "60000000", "many"):
        result = CliRunner().invoke(app, ["generate", "--home", str(tmp_path), "--rows", rows])
        assert result.exit_code == 2, result.output
        assert "--rows" in result.output
        assert "Traceback" not in result.output
