"""One raw value at a time, by the raw-value rules of ``mlplatform.columns``.

The column parsers work on whole columns; a single request row would pay their numpy overhead
many times over. These per-value parsers apply the very same rule functions (``number_of``,
``bool_of``, ``date_text_of``, ``text_of``, ``is_missing``) and reasons, and tell *why* a value
is invalid, so the HTTP API can name the reason and the client can predict one row in
microseconds. Standard library and numpy only.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from mlplatform.columns import (
    MISSING_CATEGORY,
    allowed_values,
    bool_of,
    date_format,
    date_of,
    date_text_of,
    is_missing,
    number_of,
    reason_of,
    text_of,
    whole_number_of,
)
from mlplatform.spec import Column, Features

PLAIN_TYPES = frozenset({str, int, float, bool, type(None)})

# A parser returns (value, reason): value None = missing; reason is None unless the raw value
# is invalid (then value is None too, as the column parsers set invalid values to missing).
Parsed = tuple[Any, str | None]
ScalarParser = Callable[[Any], Parsed]


def numeric_parser(column: Column) -> ScalarParser:
    """float/int: any finite number, also written as a string; ints must be whole."""
    rule = whole_number_of if column.type == "int" else number_of
    reason = reason_of(column)

    def parse(value: Any) -> Parsed:
        if is_missing(value):
            return None, None
        number = rule(value)
        return (None, reason) if number is None else (number, None)

    return parse


def category_parser(column: Column) -> ScalarParser:
    """Trimmed text; outside the allowed values (case-sensitive) it is invalid."""
    allowed = allowed_values(column)
    reason = reason_of(column)

    def parse(value: Any) -> Parsed:
        if is_missing(value):
            return None, None
        text = text_of(value)
        if allowed is not None and text not in allowed:
            return None, reason
        return text, None

    return parse


def bool_parser(column: Column) -> ScalarParser:
    """true/false, yes/no, t/f, y/n, 1/0 (any case) -> 1.0/0.0."""
    reason = reason_of(column)

    def parse(value: Any) -> Parsed:
        if is_missing(value):
            return None, None
        flag = bool_of(value)
        return (None, reason) if flag is None else (flag, None)

    return parse


def date_parser(column: Column) -> ScalarParser:
    """A ``datetime.date`` parsed with the column's strptime format (dates pass through)."""
    fmt = date_format(column)
    reason = reason_of(column)

    @functools.lru_cache(maxsize=4096)  # strptime is slow; request dates repeat a lot
    def from_text(text: str) -> Parsed:
        day = date_text_of(text, fmt)
        return (None, reason) if day is None else (day, None)

    def parse(value: Any) -> Parsed:
        if is_missing(value):
            return None, None
        if isinstance(value, np.datetime64 | dt.date):
            return date_of(value, fmt), None
        return from_text(text_of(value))

    return parse


def id_parser(column: Column) -> ScalarParser:
    def parse(value: Any) -> Parsed:
        return (None if is_missing(value) else text_of(value)), None

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
