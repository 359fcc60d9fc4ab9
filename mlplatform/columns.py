"""The raw-value rules, and schema-driven parsing of raw columns into model features.

This module is the single definition of how a raw cell is read: the rules below (``WHITESPACE``,
the missing, true and false tokens, ``number_of``, ``bool_of``, ``date_of``, ``text_of`` and
the reasons) are applied value by value by ``serving.scalars``, per distinct value by the
column parsers here, and whole-column by the Arrow kernels of ``columnar.kernels``, which
compile their token sets, trim set and number pattern from these constants. numpy only: the
module ships inside every bundle, so serving cannot drift from training.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, cast

import numpy as np

from mlplatform.spec import Column, Features

# -- the raw-value rules ------------------------------------------------------------------

# Exactly the characters Python's str.strip() removes (str.isspace()); cells are trimmed of them.
WHITESPACE = (
    "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005"
    "\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
# Trimmed and lower-cased, these cells are missing (lower-casing maps no other character onto
# the ASCII letters these tokens use, so a byte-wise ASCII match gives the same answer).
MISSING_TOKENS = ("", "na", "n/a", "nan", "null", "none", "nat")
MISSING_CATEGORY = "__missing__"
TRUE_TOKENS = ("true", "t", "yes", "y", "1", "1.0")
FALSE_TOKENS = ("false", "f", "no", "n", "0", "0.0")
# The usual spelling of a number: every trimmed text matching it is parsed by ``float`` to the
# value that a correctly rounded decimal parser gives. Other texts go through ``number_of``.
PLAIN_NUMBER = r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"
DEFAULT_DATE_FORMAT = "%Y-%m-%d"
BOOL_REASON = "not true/false"
FeatureKind = Literal["numeric", "category"]

_MISSING = frozenset(MISSING_TOKENS)
_TRUE = frozenset(TRUE_TOKENS)
_FALSE = frozenset(FALSE_TOKENS)


def is_missing(value: object) -> bool:
    """None, NaN, NaT or (trimmed, any case) a missing token such as '' or 'NA'."""
    if value is None:
        return True
    if isinstance(value, float):
        return value != value
    if isinstance(value, str):
        return value.strip().lower() in _MISSING
    if isinstance(value, np.datetime64):
        return bool(np.isnat(value))
    return False


def number_of(value: Any) -> float | None:
    """A present value as a finite float (numbers, or trimmed text ``float`` reads), else None."""
    try:
        number = float(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


def whole_number_of(value: Any) -> float | None:
    """``number_of`` for int columns: only whole numbers."""
    number = number_of(value)
    return number if number is not None and number.is_integer() else None


def bool_of(value: Any) -> float | None:
    """1.0/0.0 for true/false-like values (trimmed, any case), else None."""
    text = str(value).strip().lower()
    if text in _TRUE:
        return 1.0
    if text in _FALSE:
        return 0.0
    return None


def text_of(value: Any) -> str:
    """A category or id value: its text, trimmed; categories are case-sensitive."""
    return str(value).strip()


def date_text_of(text: str, fmt: str) -> dt.date | None:
    """A trimmed text parsed with the column's strptime format, else None."""
    try:
        return dt.datetime.strptime(text, fmt).date()
    except ValueError:
        return None


def date_of(value: Any, fmt: str) -> dt.date | None:
    """A present date value: dates and datetimes pass through, text is parsed with ``fmt``."""
    if isinstance(value, np.datetime64):
        return value.astype("datetime64[D]").item()
    if isinstance(value, dt.datetime | dt.date):
        return np.datetime64(value, "D").item()
    return date_text_of(str(value).strip(), fmt)


def date_format(column: Column) -> str:
    return column.format or DEFAULT_DATE_FORMAT


def reason_of(column: Column) -> str:
    """Why a value of this column is invalid, as the checks and the API word it."""
    kind = column.type
    if kind == "float":
        return "not a number"
    if kind == "int":
        return "not a whole number"
    if kind == "bool":
        return BOOL_REASON
    if kind == "date":
        return f"not a {date_format(column)} date"
    if kind == "category":
        return "not one of " + ", ".join(column.values) if column.values else "invalid"
    return ""


def allowed_values(column: Column) -> frozenset[str] | None:
    """The allowed category values (exact, after trimming), or None for any."""
    return None if column.values is None else frozenset(column.values)


# -- whole columns of Python objects (bundles, request batches, Parquet cells) --------------


@dataclass(frozen=True)
class Parsed:
    """One parsed column: typed values, plus masks of missing and invalid input values.

    ``values`` is float64 (NaN = missing) for float/int/bool, an object array of str/None for
    category and id, and datetime64[D] (NaT = missing) for date. Invalid values are already
    set to missing in ``values``. ``out_of_range`` marks numbers outside [min, max]; they are
    kept in ``values`` (the feature rules decide between clipping and dropping them).
    """

    values: np.ndarray
    missing: np.ndarray
    invalid: np.ndarray
    out_of_range: np.ndarray
    reason: str


def _as_object(values: object) -> np.ndarray:
    arr = np.asarray(values, dtype=object)
    return arr.reshape(-1)


def missing_mask(values: np.ndarray) -> np.ndarray:
    """True where a value is missing (``is_missing``)."""
    return np.fromiter(map(is_missing, values), dtype=bool, count=len(values))


def _by_unique(values: np.ndarray, fn: Callable[[Any], Any]) -> np.ndarray:
    """``fn(value)`` (None = invalid) once per distinct value, as an object array."""
    keys = np.array([v if isinstance(v, str) else repr(v) for v in values], dtype=object)
    uniq, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    out = np.empty(len(uniq), dtype=object)
    out[:] = [fn(values[i]) for i in first]
    return out[inverse]


def _floats(objs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ok = np.array([o is not None for o in objs], dtype=bool)
    return np.array([o if o is not None else np.nan for o in objs], dtype=np.float64), ok


def parse_numeric(values: np.ndarray, column: Column) -> Parsed:
    """Numbers (also written as strings, ``number_of``); ints must be whole numbers."""
    values = _as_object(values)
    missing = missing_mask(values)
    out = np.full(len(values), np.nan)
    invalid = np.zeros(len(values), dtype=bool)
    present = ~missing
    if present.any():
        rule = whole_number_of if column.type == "int" else number_of
        parsed, ok = _floats(_by_unique(values[present], rule))
        out[present] = parsed
        invalid[present] = ~ok
    return Parsed(out, missing, invalid, out_of_range(out, column), reason_of(column))


def out_of_range(numbers: np.ndarray, column: Column) -> np.ndarray:
    """Numbers outside the column's [min, max] (NaN is never out of range)."""
    lo = -np.inf if column.min is None else column.min
    hi = np.inf if column.max is None else column.max
    with np.errstate(invalid="ignore"):
        return ~np.isnan(numbers) & ((numbers < lo) | (numbers > hi))


def parse_category(values: np.ndarray, column: Column) -> Parsed:
    """Trimmed text; values outside the allowed list are invalid (case-sensitive)."""
    values = _as_object(values)
    missing = missing_mask(values)
    out = np.empty(len(values), dtype=object)
    out[:] = None
    allowed = allowed_values(column)
    text = np.array([text_of(v) for v in values[~missing]], dtype=object)
    if allowed is not None:
        ok = np.array([t in allowed for t in text], dtype=bool)
    else:
        ok = np.ones(len(text), dtype=bool)
    kept = text.copy()
    kept[~ok] = None
    out[~missing] = kept
    invalid = np.zeros(len(values), dtype=bool)
    invalid[~missing] = ~ok
    return Parsed(out, missing, invalid, np.zeros(len(values), dtype=bool), reason_of(column))


def parse_bool(values: np.ndarray, column: Column) -> Parsed:
    """true/false, yes/no, t/f, y/n, 1/0 (any case) become 1.0/0.0 (``bool_of``)."""
    values = _as_object(values)
    missing = missing_mask(values)
    out = np.full(len(values), np.nan)
    invalid = np.zeros(len(values), dtype=bool)
    if (~missing).any():
        parsed, ok = _floats(_by_unique(values[~missing], bool_of))
        out[~missing] = parsed
        invalid[~missing] = ~ok
    none = np.zeros(len(values), dtype=bool)
    return Parsed(out, missing, invalid, none, reason_of(column))


def parse_date(values: np.ndarray, column: Column) -> Parsed:
    """Parse with the column's strptime format (``date_of``); dates pass through."""
    values = _as_object(values)
    missing = missing_mask(values)
    fmt = date_format(column)
    out = np.full(len(values), np.datetime64("NaT"), dtype="datetime64[D]")
    invalid = np.zeros(len(values), dtype=bool)
    if (~missing).any():
        objs = _by_unique(values[~missing], lambda v: date_of(v, fmt))
        out[~missing] = np.array(
            [np.datetime64("NaT") if o is None else o for o in objs], dtype="datetime64[D]"
        )
        invalid[~missing] = np.array([o is None for o in objs], dtype=bool)
    none = np.zeros(len(values), dtype=bool)
    return Parsed(out, missing, invalid, none, reason_of(column))


def parse_id(values: np.ndarray, column: Column) -> Parsed:
    values = _as_object(values)
    missing = missing_mask(values)
    out = np.empty(len(values), dtype=object)
    out[:] = [None if m else text_of(v) for v, m in zip(values, missing, strict=True)]
    none = np.zeros(len(values), dtype=bool)
    return Parsed(out, missing, none, none, reason_of(column))


PARSERS = {
    "float": parse_numeric,
    "int": parse_numeric,
    "category": parse_category,
    "bool": parse_bool,
    "date": parse_date,
    "id": parse_id,
}


def parse_column(values: object, column: Column) -> Parsed:
    """Parse one raw column according to its spec type."""
    return PARSERS[column.type](_as_object(values), column)


def feature_layout(
    columns: dict[str, Column], features: Features, feature_columns: list[str]
) -> list[tuple[str, FeatureKind]]:
    """The model's input features, in order: (name, numeric|category)."""
    layout: list[tuple[str, FeatureKind]] = []
    for name in feature_columns:
        col = columns[name]
        if col.type == "date":
            layout += [(f"{name}_{part}", "numeric") for part in features.date_parts.get(name, ())]
        elif col.type == "category":
            layout.append((name, "category"))
        else:
            layout.append((name, "numeric"))
    return layout


def date_part(days: np.ndarray, part: str) -> np.ndarray:
    """One calendar part of datetime64[D] values as float (NaN where NaT)."""
    nat = np.isnat(days)
    safe = np.where(nat, np.datetime64("1970-01-01"), days)
    # calendar units only as a part needs them: each conversion is a pass over every value
    if part == "year":
        out = safe.astype("datetime64[Y]").astype(np.int64) + 1970
    elif part == "month":
        out = safe.astype("datetime64[M]").astype(np.int64) % 12 + 1
    elif part == "quarter":
        out = (safe.astype("datetime64[M]").astype(np.int64) % 12) // 3 + 1
    elif part == "day":
        months = safe.astype("datetime64[M]")
        out = (safe - months.astype("datetime64[D]")).astype(np.int64) + 1
    elif part == "dayofyear":
        years = safe.astype("datetime64[Y]")
        out = (safe - years.astype("datetime64[D]")).astype(np.int64) + 1
    elif part == "dayofweek":  # Monday = 0, like pandas
        out = (safe.astype(np.int64) + 3) % 7
    else:
        raise ValueError(f"unknown date part {part!r}")
    return np.where(nat, np.nan, out.astype(np.float64))


def derive_features(
    parsed: dict[str, np.ndarray],
    columns: dict[str, Column],
    features: Features,
    feature_columns: list[str],
) -> dict[str, np.ndarray]:
    """Model inputs from parsed column values: float32 numerics, str categories, date parts.

    Out-of-range numbers are clipped or made missing (``features.out_of_range``); missing
    categories become ``MISSING_CATEGORY`` so the ONNX graph never sees a null string.
    """
    out: dict[str, np.ndarray] = {}
    for name in feature_columns:
        col = columns[name]
        values = parsed[name]
        if col.type == "date":
            days = np.asarray(values, dtype="datetime64[D]")
            for part in features.date_parts.get(name, ()):
                out[f"{name}_{part}"] = date_part(days, part).astype(np.float32)
        elif col.type == "category":
            cats = np.asarray(values, dtype=object)
            # None or NaN, compared in C loops
            gone = np.equal(cats, cast(Any, None)) | np.not_equal(cats, cats)
            out[name] = np.where(gone, MISSING_CATEGORY, cats).astype(object)
        else:
            x = np.asarray(values, dtype=np.float64)
            lo = -np.inf if col.min is None else col.min
            hi = np.inf if col.max is None else col.max
            if features.out_of_range == "clip":
                x = np.clip(x, lo, hi)
            else:
                with np.errstate(invalid="ignore"):
                    x = np.where((x < lo) | (x > hi), np.nan, x)
            out[name] = x.astype(np.float32)
    return out
