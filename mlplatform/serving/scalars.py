"""One raw value at a time, exactly as ``mlplatform.columns`` parses whole columns.

The column parsers are vectorised for landing files; a single request row pays their numpy
overhead many times over. These scalar twins give the same answers (a parity test holds them
to it) and tell *why* a value is invalid, so the HTTP API can name the reason and the client
can predict one row in microseconds. Standard library and numpy only.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from mlplatform.columns import FALSE_TOKENS, MISSING_CATEGORY, MISSING_TOKENS, TRUE_TOKENS
from mlplatform.spec import Column, Features

_MISSING = frozenset(MISSING_TOKENS)
_TRUE = frozenset(TRUE_TOKENS)
_FALSE = frozenset(FALSE_TOKENS)
PLAIN_TYPES = frozenset({str, int, float, bool, type(None)})

# A parser returns (value, reason): value None = missing; reason is None unless the raw value
# is invalid (then value is None too, as the column parsers set invalid values to missing).
Parsed = tuple[Any, str | None]
ScalarParser = Callable[[Any], Parsed]


def is_missing(value: object) -> bool:
    """Scalar ``columns.missing_mask``: None, NaN, NaT or a missing token such as '' or 'NA'."""
    if value is None:
        return True
    if isinstance(value, float):
        return value != value
    if isinstance(value, str):
        return value.strip().lower() in _MISSING
    if isinstance(value, np.datetime64):
        return bool(np.isnat(value))
    return False


def numeric_parser(column: Column) -> ScalarParser:
    """float/int: any finite number, also written as a string; ints must be whole."""
    whole = column.type == "int"
    reason = "not a whole number" if whole else "not a number"

    def parse(value: Any) -> Parsed:
        if is_missing(value):
            return None, None
        try:
            number = float(value)
        except (TypeError, ValueError, OverflowError):
            return None, reason
        if not math.isfinite(number) or (whole and not number.is_integer()):
            return None, reason
        return number, None

    return parse


def category_parser(column: Column) -> ScalarParser:
    """Stripped text; outside the allowed values (case-sensitive) it is invalid."""
    allowed = None if column.values is None else frozenset(column.values)
    reason = "not one of " + ", ".join(column.values) if column.values else "invalid"

    def parse(value: Any) -> Parsed:
        if is_missing(value):
            return None, None
        text = str(value).strip()
        if allowed is not None and text not in allowed:
            return None, reason
        return text, None

    return parse


def bool_parser(column: Column) -> ScalarParser:
    """true/false, yes/no, t/f, y/n, 1/0 (any case) -> 1.0/0.0."""

    def parse(value: Any) -> Parsed:
        if is_missing(value):
            return None, None
        text = str(value).strip().lower()
        if text in _TRUE:
            return 1.0, None
        if text in _FALSE:
            return 0.0, None
        return None, "not true/false"

    return parse


def date_parser(column: Column) -> ScalarParser:
    """A ``datetime.date`` parsed with the column's strptime format (dates pass through)."""
    fmt = column.format or "%Y-%m-%d"
    reason = f"not a {fmt} date"

    @functools.lru_cache(maxsize=4096)  # strptime is slow; request dates repeat a lot
    def from_text(text: str) -> Parsed:
        try:
            return dt.datetime.strptime(text, fmt).date(), None
        except ValueError:
            return None, reason

    def parse(value: Any) -> Parsed:
        if is_missing(value):
            return None, None
        if isinstance(value, np.datetime64):
            return value.astype("datetime64[D]").item(), None
        if isinstance(value, dt.datetime | dt.date):
            return np.datetime64(value, "D").item(), None
        return from_text(str(value).strip())

    return parse


def id_parser(column: Column) -> ScalarParser:
    def parse(value: Any) -> Parsed:
        return (None if is_missing(value) else str(value).strip()), None

    return parse


PARSERS: dict[str, Callable[[Column], ScalarParser]] = {
    "float": numeric_parser,
    "int": numeric_parser,
    "category": category_parser,
    "bool": bool_parser,
    "date": date_parser,
    "id": id_parser,
}


def scalar_parser(column: Column) -> ScalarParser:
    """The scalar parser of one column type."""
    return PARSERS[column.type](column)


def date_part(day: dt.date | None, part: str) -> float:
    """Scalar ``columns.date_part``: one calendar part as float (NaN when missing)."""
    if day is None:
        return math.nan
    if part == "year":
        return float(day.year)
    if part == "month":
        return float(day.month)
    if part == "quarter":
        return float((day.month - 1) // 3 + 1)
    if part == "day":
        return float(day.day)
    if part == "dayofyear":
        return float(day.timetuple().tm_yday)
    if part == "dayofweek":  # Monday = 0
        return float(day.weekday())
    raise ValueError(f"unknown date part {part!r}")


FeatureFn = Callable[[Any], tuple[Any, ...]]


def feature_function(column: Column, name: str, features: Features) -> FeatureFn:
    """Raw value -> this column's model features (as ``columns.derive_features`` makes them).

    One value per layout entry of the column: a float (NaN = missing) for numeric features,
    a str for a category. Invalid values count as missing, like in training.
    """
    parse = scalar_parser(column)
    if column.type == "date":
        parts = tuple(features.date_parts.get(name, ()))

        def date_features(value: Any) -> tuple[Any, ...]:
            day = parse(value)[0]
            return tuple(date_part(day, p) for p in parts)

        return date_features
    if column.type == "category":

        def category_feature(value: Any) -> tuple[Any, ...]:
            text = parse(value)[0]
            return (MISSING_CATEGORY if text is None else text,)

        return category_feature
    lo = -math.inf if column.min is None else column.min
    hi = math.inf if column.max is None else column.max
    clip = features.out_of_range == "clip"

    def numeric_feature(value: Any) -> tuple[Any, ...]:
        number = parse(value)[0]
        if number is None:
            return (math.nan,)
        if number < lo:
            return (lo if clip else math.nan,)
        if number > hi:
            return (hi if clip else math.nan,)
        return (number,)

    return numeric_feature
