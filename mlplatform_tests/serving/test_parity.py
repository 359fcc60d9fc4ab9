"""The scalar parsers, the client's fast path and the API's validation agree with
``mlplatform.columns`` on many random, dirty values."""

from __future__ import annotations

import datetime as dt
import json
import math
import random
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from mlplatform.bundles.format import load
from mlplatform.columns import parse_column
from mlplatform.serving.predictor import FastPredictor
from mlplatform.serving.rows import PredictValidator
from mlplatform.serving.scalars import scalar_parser
from mlplatform.spec import Column
from mlplatform_tests.serving.builders import Built

NUMBERS = [
    "3", " 4.5 ", "-2", "1e3", "1E-2", "1_000", "0x10", "+7", ".5", "5.", "３", "1e400", "-1e400",
    "inf", "-inf", "Infinity", "-nan", "nan", "NaN", "12abc", "", "  ", "NA", "n/a", "None",
    "null", "NaT", "2.0", "2.50", "-0", "999", "121", "-1", 0, 1, -3, 2.5, 120, 121, 10**20,
    1e300, float("nan"), float("inf"), True, False, None,
]  # fmt: skip
CATEGORIES = [
    "basic", " standard ", "premium", "Basic", "gold", "", "na", "NULL", "none ", 3, 1.5,
    True, None, float("nan"), "north", "card", "invoice", "paypal ",
]  # fmt: skip
BOOLS = [
    "true", "True", " yes ", "Y", "t", "1", "1.0", "0", "0.0", "false", "No", "n", "F",
    "maybe", "2", "", "nan", True, False, 1, 0, 1.0, 0.0, 2, None, float("nan"),
]  # fmt: skip
DATES = [
    "24/07/2019", " 01/01/2020 ", "31/02/2020", "2019-07-24", "1/2/2021", "29/02/2024",
    "29/02/2023", "", "NA", "garbage", 2020, None, float("nan"), "00/01/2020",
]  # fmt: skip
COLUMNS = {
    "float": (Column(type="float", min=0, max=120), NUMBERS),
    "int": (Column(type="int", min=0, max=50), NUMBERS),
    "category": (Column(type="category", values=("basic", "standard", "premium")), CATEGORIES),
    "open_category": (Column(type="category"), CATEGORIES),
    "bool": (Column(type="bool"), BOOLS),
    "date": (Column(type="date", format="%d/%m/%Y"), DATES),
}


def same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b and type(a) is type(b)


@pytest.mark.parametrize("kind", list(COLUMNS))
def test_scalar_parsers_match_the_column_parsers(kind: str) -> None:
    column, pool = COLUMNS[kind]
    parse = scalar_parser(column)
    for value in pool:
        parsed = parse_column([value], column)
        got, reason = parse(value)
        assert (reason is not None) == bool(parsed.invalid[0]), value
        want = parsed.values[0]
        if column.type in ("float", "int", "bool"):
            assert same(np.nan if got is None else got, float(want)), value
        elif column.type == "date":
            assert (got is None and np.isnat(want)) or np.datetime64(got, "D") == want, value
        else:
            assert got == want, value
        if reason is not None:
            assert reason == parsed.reason
    # Whole columns at once take a different code path (astype vs. per-value fallback).
    valid = [v for v in pool if parse(v)[1] is None]
    batch = parse_column(valid, column)
    assert not batch.invalid.any()


def random_rows(built: Built, n: int, seed: int) -> list[dict[str, Any]]:
    """Landing rows with random cells replaced by dirty values or dropped."""
    rng = random.Random(seed)
    pools = {
        "signup_date": DATES,
        "tenure_months": NUMBERS,
        "monthly_charges": NUMBERS,
        "support_calls": NUMBERS,
        "plan": CATEGORIES,
        "region": CATEGORIES,
        "payment_method": CATEGORIES,
        "autopay": BOOLS,
    }
    rows = []
    for _ in range(n):
        row = dict(rng.choice(built.rows))
        for col, pool in pools.items():
            roll = rng.random()
            if roll < 0.35:
                row[col] = rng.choice(pool)
            elif roll < 0.40:
                row.pop(col, None)
        rows.append(row)
    return rows


def test_fast_path_matches_bundle_predict_rows(built: Built) -> None:
    for key in ("a", "b"):
        bundle = load(built.bundles_dir / built.bundles[key])
        fast = FastPredictor(bundle)
        rows = random_rows(built, 400, seed=len(key))
        assert fast.feeds(rows) is not None  # the fast path really ran
        assert fast.predict_rows(rows) == bundle.predict_rows(rows)
        for row in rows[:150]:
            assert fast.predict_rows([row]) == bundle.predict_rows([row]), row


def test_fast_path_falls_back_for_unusual_types(built: Built) -> None:
    bundle = load(built.bundles_dir / built.bundles["a"])
    fast = FastPredictor(bundle)
    row = {
        "tenure_months": np.float32(5.5),
        "signup_date": dt.date(2020, 3, 1),
        "support_calls": np.int64(3),
    }
    assert fast.feeds([row]) is None
    assert fast.predict_rows([row]) == bundle.predict_rows([row])


def test_api_refuses_wrong_types_and_predicts_the_rest_like_training(built: Built) -> None:
    bundle = load(built.bundles_dir / built.bundles["a"])
    validator = PredictValidator(bundle.schema)
    refused = 0
    for name in bundle.schema.feature_columns:
        column = bundle.schema.columns[name]
        pool = {"date": DATES, "category": CATEGORIES, "bool": BOOLS}.get(column.type, NUMBERS)
        as_float = Column(type="float")
        for value in pool:
            if isinstance(value, float) and not math.isfinite(value):
                continue  # not JSON
            payload = json.dumps({"rows": [{name: value}]}).encode()
            if column.type in ("float", "int"):
                bad = isinstance(value, bool) or bool(parse_column([value], as_float).invalid[0])
            elif column.type == "bool":
                bad = bool(parse_column([value], column).invalid[0])
            else:
                bad = not isinstance(value, str | None)
            try:
                rows = validator.rows(payload)
            except ValidationError as exc:
                assert bad, (name, value, exc)
                refused += 1
            else:
                assert not bad, (name, value)
                assert bundle.predict_rows(rows) == bundle.predict_rows([{name: value}])
    assert refused > 20
