"""Unit tests of schema-driven column parsing and feature derivation (mlplatform.columns)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from mlplatform.columns import (
    FALSE_TOKENS,
    MISSING_CATEGORY,
    TRUE_TOKENS,
    date_part,
    derive_features,
    feature_layout,
    parse_bool,
    parse_category,
    parse_column,
    parse_date,
    parse_numeric,
)
from mlplatform.spec import Column, Features

NAN = float("nan")
FLOAT = Column(type="float")
INT = Column(type="int")
PLAN = Column(type="category", values=("basic", "standard", "premium"))
BOOL = Column(type="bool")


def _obj(*values: object) -> np.ndarray:
    arr = np.empty(len(values), dtype=object)
    arr[:] = list(values)
    return arr


# ---------------------------------------------------------------------------- parse_numeric


def test_numeric_strings_with_spaces_are_parsed() -> None:
    p = parse_numeric(_obj(" 12 ", "3.5", "  -4", "1e2", "7 "), FLOAT)
    np.testing.assert_array_equal(p.values, [12.0, 3.5, -4.0, 100.0, 7.0])
    assert p.values.dtype == np.float64
    assert not p.missing.any()
    assert not p.invalid.any()
    assert not p.out_of_range.any()


def test_numeric_accepts_real_numbers_too() -> None:
    p = parse_numeric(_obj(1, 2.5, np.float32(3.0), np.int64(4)), FLOAT)
    np.testing.assert_array_equal(p.values, [1.0, 2.5, 3.0, 4.0])
    assert not p.invalid.any()


@pytest.mark.parametrize("token", ["", "  ", "NA", "na", "N/A", "null", "None", "nan", "NaT"])
def test_numeric_missing_tokens(token: str) -> None:
    p = parse_numeric(_obj(token, "1"), FLOAT)
    assert p.missing.tolist() == [True, False]
    assert p.invalid.tolist() == [False, False]
    assert np.isnan(p.values[0])
    assert p.values[1] == 1.0


def test_numeric_none_and_nan_are_missing_not_invalid() -> None:
    p = parse_numeric(_obj(None, NAN, np.nan, "2"), FLOAT)
    assert p.missing.tolist() == [True, True, True, False]
    assert not p.invalid.any()
    assert np.isnan(p.values[:3]).all()
    assert p.values[3] == 2.0


@pytest.mark.parametrize("bad", ["abc", "1,5", "12 34", "--3", "inf", "-inf", "1.2.3"])
def test_numeric_garbage_is_invalid_and_set_to_missing(bad: str) -> None:
    p = parse_numeric(_obj("5", bad, "6"), FLOAT)
    assert p.invalid.tolist() == [False, True, False]
    assert p.missing.tolist() == [False, False, False]  # invalid is not the same as missing
    assert np.isnan(p.values[1])
    assert p.values[0] == 5.0 and p.values[2] == 6.0
    assert p.reason == "not a number"


def test_numeric_invalid_values_in_the_fast_path_are_flagged() -> None:
    # All values convert with astype, but 'inf' is not a finite number.
    p = parse_numeric(_obj("1", "inf", "2"), FLOAT)
    assert p.invalid.tolist() == [False, True, False]
    assert np.isnan(p.values[1])


def test_int_must_be_whole() -> None:
    p = parse_numeric(_obj("3", " 4 ", "5.0", "2.5", "-1", "x", ""), INT)
    assert p.invalid.tolist() == [False, False, False, True, False, True, False]
    assert p.missing.tolist() == [False] * 6 + [True]
    np.testing.assert_array_equal(p.values[:3], [3.0, 4.0, 5.0])
    assert p.values[4] == -1.0
    assert np.isnan(p.values[[3, 5, 6]]).all()
    assert p.reason == "not a whole number"


def test_float_accepts_fractions_that_int_rejects() -> None:
    assert not parse_numeric(_obj("2.5"), FLOAT).invalid.any()
    assert parse_numeric(_obj("2.5"), INT).invalid.all()


def test_out_of_range_mask_against_min_and_max() -> None:
    col = Column(type="float", min=0, max=10)
    p = parse_numeric(_obj("-0.5", "0", "5", "10", "10.01", "", "abc"), col)
    assert p.out_of_range.tolist() == [True, False, False, False, True, False, False]
    # Out-of-range numbers are kept: the feature rules decide what to do with them.
    assert p.values[0] == -0.5
    assert p.values[4] == 10.01
    assert not p.invalid[:5].any()


def test_out_of_range_with_only_one_bound() -> None:
    lo_only = parse_numeric(_obj("-1", "1e9"), Column(type="float", min=0))
    assert lo_only.out_of_range.tolist() == [True, False]
    hi_only = parse_numeric(_obj("-1e9", "101"), Column(type="int", max=100))
    assert hi_only.out_of_range.tolist() == [False, True]


def test_no_bounds_nothing_out_of_range() -> None:
    p = parse_numeric(_obj("-1e300", "1e300"), FLOAT)
    assert not p.out_of_range.any()


def test_numeric_empty_input() -> None:
    p = parse_numeric(_obj(), FLOAT)
    assert len(p.values) == len(p.missing) == len(p.invalid) == len(p.out_of_range) == 0


# ---------------------------------------------------------------------------- parse_category


def test_category_strips_whitespace() -> None:
    p = parse_category(_obj(" basic", "premium  ", "\tstandard\t"), PLAN)
    assert p.values.tolist() == ["basic", "premium", "standard"]
    assert not p.invalid.any()
    assert not p.missing.any()


def test_category_unknown_value_is_invalid_and_none() -> None:
    p = parse_category(_obj("basic", "gold", "standard"), PLAN)
    assert p.invalid.tolist() == [False, True, False]
    assert p.values.tolist() == ["basic", None, "standard"]
    assert p.reason == "not one of basic, standard, premium"
    assert not p.out_of_range.any()


def test_category_is_case_sensitive() -> None:
    p = parse_category(_obj("Basic", "BASIC", "basic", "North "), PLAN)
    assert p.invalid.tolist() == [True, True, False, True]
    assert p.values.tolist() == [None, None, "basic", None]


def test_category_missing_tokens_are_missing_not_invalid() -> None:
    p = parse_category(_obj("", "n/a", None, NAN, "premium"), PLAN)
    assert p.missing.tolist() == [True, True, True, True, False]
    assert not p.invalid.any()
    assert p.values.tolist() == [None, None, None, None, "premium"]


def test_category_without_values_accepts_anything() -> None:
    p = parse_category(_obj(" a ", "B", 3), Column(type="category"))
    assert p.values.tolist() == ["a", "B", "3"]
    assert not p.invalid.any()


# ---------------------------------------------------------------------------- parse_bool


@pytest.mark.parametrize("token", [*TRUE_TOKENS, "TRUE", "True", " yes ", "Y", "T"])
def test_bool_true_tokens(token: str) -> None:
    p = parse_bool(_obj(token), BOOL)
    assert p.values.tolist() == [1.0]
    assert not p.invalid.any()


@pytest.mark.parametrize("token", [*FALSE_TOKENS, "FALSE", "False", " no ", "N", "F"])
def test_bool_false_tokens(token: str) -> None:
    p = parse_bool(_obj(token), BOOL)
    assert p.values.tolist() == [0.0]
    assert not p.invalid.any()


@pytest.mark.parametrize("bad", ["maybe", "2", "-1", "ja", "truee", "0.5"])
def test_bool_other_tokens_are_invalid(bad: str) -> None:
    p = parse_bool(_obj("yes", bad), BOOL)
    assert p.invalid.tolist() == [False, True]
    assert p.values[0] == 1.0
    assert np.isnan(p.values[1])
    assert p.reason == "not true/false"


def test_bool_python_values_and_missing() -> None:
    p = parse_bool(_obj(True, False, 1, 0, None, "", "NA"), BOOL)
    assert p.values[:4].tolist() == [1.0, 0.0, 1.0, 0.0]
    assert p.missing.tolist() == [False] * 4 + [True] * 3
    assert np.isnan(p.values[4:]).all()
    assert not p.invalid.any()


# ---------------------------------------------------------------------------- parse_date


def test_date_day_first_format() -> None:
    col = Column(type="date", format="%d/%m/%Y")
    p = parse_date(_obj("01/02/2024", " 29/02/2024 ", "31/12/1999"), col)
    assert p.values.dtype == np.dtype("datetime64[D]")
    assert p.values.tolist() == [dt.date(2024, 2, 1), dt.date(2024, 2, 29), dt.date(1999, 12, 31)]
    assert not p.invalid.any()


def test_date_iso_format() -> None:
    col = Column(type="date", format="%Y-%m-%d")
    p = parse_date(_obj("2024-03-05", "1970-01-01", "1969-12-31"), col)
    expected = np.array(["2024-03-05", "1970-01-01", "1969-12-31"], dtype="datetime64[D]")
    np.testing.assert_array_equal(p.values, expected)
    assert not p.invalid.any()


@pytest.mark.parametrize(
    "bad", ["31/02/2024", "29/02/2023", "yesterday", "2024-01-05", "13/13/2024", "01/01/24x"]
)
def test_date_invalid_values(bad: str) -> None:
    col = Column(type="date", format="%d/%m/%Y")
    p = parse_date(_obj("01/01/2024", bad), col)
    assert p.invalid.tolist() == [False, True]
    assert p.missing.tolist() == [False, False]
    assert np.isnat(p.values[1])
    assert p.values[0] == np.datetime64("2024-01-01")
    assert p.reason == "not a %d/%m/%Y date"


def test_date_format_matters() -> None:
    iso = parse_date(_obj("05/03/2024"), Column(type="date", format="%Y-%m-%d"))
    assert iso.invalid.all()
    us = parse_date(_obj("05/03/2024"), Column(type="date", format="%m/%d/%Y"))
    assert us.values[0] == np.datetime64("2024-05-03")
    eu = parse_date(_obj("05/03/2024"), Column(type="date", format="%d/%m/%Y"))
    assert eu.values[0] == np.datetime64("2024-03-05")


def test_date_missing_values_are_nat() -> None:
    col = Column(type="date", format="%Y-%m-%d")
    p = parse_date(_obj("", None, "NA", NAN, "2024-01-01"), col)
    assert p.missing.tolist() == [True, True, True, True, False]
    assert not p.invalid.any()
    assert np.isnat(p.values[:4]).all()


def test_date_objects_pass_through() -> None:
    col = Column(type="date", format="%d/%m/%Y")
    p = parse_date(
        _obj(dt.date(2024, 1, 2), dt.datetime(2024, 1, 3, 12, 30), np.datetime64("2024-01-04")),
        col,
    )
    expected = np.array(["2024-01-02", "2024-01-03", "2024-01-04"], dtype="datetime64[D]")
    np.testing.assert_array_equal(p.values, expected)
    assert not p.invalid.any()


def test_parse_column_dispatches_on_type() -> None:
    assert parse_column(["1"], INT).values.tolist() == [1.0]
    assert parse_column(["basic"], PLAN).values.tolist() == ["basic"]
    assert parse_column(["yes"], BOOL).values.tolist() == [1.0]
    assert parse_column([" C1 "], Column(type="id")).values.tolist() == ["C1"]
    d = parse_column(["2024-01-01"], Column(type="date", format="%Y-%m-%d"))
    assert d.values[0] == np.datetime64("2024-01-01")


# ---------------------------------------------------------------------------- date_part

PARTS = ("year", "month", "day", "dayofweek", "dayofyear", "quarter")


def _dates() -> np.ndarray:
    """Every day from 1895 to 1905 and 1967 to 1973, plus a few leap-year edges."""
    ranges = [
        np.arange("1895-01-01", "1905-01-01", dtype="datetime64[D]"),  # 1900: not a leap year
        np.arange("1967-01-01", "1973-01-01", dtype="datetime64[D]"),  # around the epoch
        np.arange("1999-12-01", "2001-03-31", dtype="datetime64[D]"),  # 2000: a leap year
        np.arange("2023-12-25", "2024-12-31", dtype="datetime64[D]"),  # 2024: a leap year
    ]
    edges = np.array(["2100-02-28", "2100-03-01", "2400-02-29", "2400-12-31"], "datetime64[D]")
    return np.concatenate([*ranges, edges])


@pytest.mark.parametrize("part", PARTS)
def test_date_part_matches_pandas(part: str) -> None:
    days = _dates()
    got = date_part(days, part)
    expected = getattr(pd.Series(days.astype("datetime64[s]")).dt, part).to_numpy(np.float64)
    assert got.dtype == np.float64
    np.testing.assert_array_equal(got, expected)


def test_date_part_specific_values() -> None:
    days = np.array(["2024-02-29", "2024-12-31", "2023-12-31", "1970-01-01"], "datetime64[D]")
    assert date_part(days, "dayofyear").tolist() == [60.0, 366.0, 365.0, 1.0]
    assert date_part(days, "dayofweek").tolist() == [3.0, 1.0, 6.0, 3.0]  # Thu, Tue, Sun, Thu
    assert date_part(days, "quarter").tolist() == [1.0, 4.0, 4.0, 1.0]
    assert date_part(days, "day").tolist() == [29.0, 31.0, 31.0, 1.0]


@pytest.mark.parametrize("part", PARTS)
def test_date_part_nat_is_nan(part: str) -> None:
    days = np.array(["2024-05-17", "NaT", "1960-07-04", "NaT"], dtype="datetime64[D]")
    got = date_part(days, part)
    assert np.isnan(got).tolist() == [False, True, False, True]


def test_date_part_unknown_part() -> None:
    with pytest.raises(ValueError, match="week"):
        date_part(np.array(["2024-01-01"], dtype="datetime64[D]"), "week")


# ---------------------------------------------------------------------------- derive_features


COLUMNS: dict[str, Column] = {
    "charges": Column(type="float", min=0, max=100),
    "calls": Column(type="int", min=0, max=10),
    "plan": PLAN,
    "autopay": BOOL,
    "signup": Column(type="date", format="%Y-%m-%d"),
}
FEATURE_COLUMNS = list(COLUMNS)


def _parsed() -> dict[str, np.ndarray]:
    raw = {
        "charges": ["-5", "50", "150", "", "100"],
        "calls": ["0", "11", "3", "-1", "abc"],
        "plan": ["basic", "", "gold", "premium", None],
        "autopay": ["yes", "no", "", "true", "0"],
        "signup": ["2024-02-29", "", "1999-12-31", "2020-06-15", "bad"],
    }
    return {name: parse_column(raw[name], COLUMNS[name]).values for name in COLUMNS}


def _derive(features: Features) -> dict[str, np.ndarray]:
    return derive_features(_parsed(), COLUMNS, features, FEATURE_COLUMNS)


def test_derive_clip() -> None:
    out = _derive(Features(out_of_range="clip"))
    np.testing.assert_array_equal(out["charges"], np.array([0, 50, 100, NAN, 100], np.float32))
    np.testing.assert_array_equal(out["calls"], np.array([0, 10, 3, 0, NAN], np.float32))


def test_derive_missing() -> None:
    out = _derive(Features(out_of_range="missing"))
    np.testing.assert_array_equal(out["charges"], np.array([NAN, 50, NAN, NAN, 100], np.float32))
    np.testing.assert_array_equal(out["calls"], np.array([0, NAN, 3, NAN, NAN], np.float32))


def test_derive_bool_is_numeric() -> None:
    out = _derive(Features())
    np.testing.assert_array_equal(out["autopay"], np.array([1, 0, NAN, 1, 0], np.float32))


def test_derive_missing_categories() -> None:
    out = _derive(Features())
    assert out["plan"].tolist() == [
        "basic",
        MISSING_CATEGORY,
        MISSING_CATEGORY,
        "premium",
        MISSING_CATEGORY,
    ]
    assert all(isinstance(v, str) for v in out["plan"])


def test_derive_nan_category_becomes_missing_category() -> None:
    parsed = {"plan": _obj("basic", NAN, None)}
    out = derive_features(parsed, {"plan": PLAN}, Features(), ["plan"])
    assert out["plan"].tolist() == ["basic", MISSING_CATEGORY, MISSING_CATEGORY]


def test_derive_dtypes_and_names() -> None:
    features = Features(date_parts={"signup": ("year", "month", "dayofweek", "quarter")})
    out = _derive(features)
    assert list(out) == [
        "charges",
        "calls",
        "plan",
        "autopay",
        "signup_year",
        "signup_month",
        "signup_dayofweek",
        "signup_quarter",
    ]
    assert "signup" not in out
    for name, values in out.items():
        expected = np.dtype(object) if name == "plan" else np.dtype(np.float32)
        assert values.dtype == expected, name
        assert len(values) == 5, name
    np.testing.assert_array_equal(
        out["signup_year"], np.array([2024, NAN, 1999, 2020, NAN], np.float32)
    )
    np.testing.assert_array_equal(out["signup_month"], np.array([2, NAN, 12, 6, NAN], np.float32))
    np.testing.assert_array_equal(
        out["signup_dayofweek"], np.array([3, NAN, 4, 0, NAN], np.float32)
    )
    np.testing.assert_array_equal(out["signup_quarter"], np.array([1, NAN, 4, 2, NAN], np.float32))


def test_derive_names_follow_the_layout() -> None:
    features = Features(date_parts={"signup": ("dayofyear", "day")})
    out = _derive(features)
    layout = feature_layout(COLUMNS, features, FEATURE_COLUMNS)
    assert list(out) == [name for name, _ in layout]
    assert dict(layout)["plan"] == "category"
    assert dict(layout)["signup_day"] == "numeric"


def test_derive_date_without_parts_gives_no_feature() -> None:
    out = _derive(Features())
    assert not any(name.startswith("signup") for name in out)


def test_derive_accepts_pandas_datetime_values() -> None:
    # A typed partition frame stores dates as datetime64[s]; derive_features must accept them.
    days = np.array(["2024-02-29", "NaT"], dtype="datetime64[D]")
    values = pd.Series(days).to_numpy()
    out = derive_features(
        {"signup": values},
        {"signup": COLUMNS["signup"]},
        Features(date_parts={"signup": ("dayofyear",)}),
        ["signup"],
    )
    np.testing.assert_array_equal(out["signup_dayofyear"], np.array([60, NAN], np.float32))


@pytest.mark.parametrize("storage", ["str", "object"])
def test_features_fill_category_text_as_the_bundle_rule(storage: str) -> None:
    from mlplatform.steps.features import _filled_text

    values = ["basic", None, "premium", NAN, "standard"]
    text = pd.Series(values, dtype=storage).astype("str")
    rule = derive_features({"plan": _obj(*values)}, {"plan": PLAN}, Features(), ["plan"])
    assert list(_filled_text(text)) == rule["plan"].tolist()
    assert list(_filled_text(text.dropna())) == ["basic", "premium", "standard"]
