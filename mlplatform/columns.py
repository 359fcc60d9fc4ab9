"""Schema-driven parsing of raw column values and derivation of model features.

numpy only: the same functions turn a landing file into features during training and a request
into model inputs during serving, so the two cannot drift apart.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Literal

import numpy as np

from mlplatform.spec import Column, Features

MISSING_TOKENS = ("", "na", "n/a", "nan", "null", "none", "nat")
MISSING_CATEGORY = "__missing__"
TRUE_TOKENS = ("true", "t", "yes", "y", "1", "1.0")
FALSE_TOKENS = ("false", "f", "no", "n", "0", "0.0")
FeatureKind = Literal["numeric", "category"]


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
    """True where a value is None, NaN or a missing token such as '' or 'NA'."""
    out = np.zeros(len(values), dtype=bool)
    for i, v in enumerate(values):
        if v is None:
            out[i] = True
        elif isinstance(v, float):
            out[i] = v != v
        elif isinstance(v, str):
            out[i] = v.strip().lower() in MISSING_TOKENS
        elif isinstance(v, np.datetime64):
            out[i] = bool(np.isnat(v))
    return out


def _by_unique(values: np.ndarray, fn: object) -> tuple[np.ndarray, np.ndarray]:
    """Apply ``fn(value) -> (parsed, ok)`` once per distinct value; return parsed and ok arrays."""
    keys = np.array([v if isinstance(v, str) else repr(v) for v in values], dtype=object)
    uniq, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    parsed, ok = zip(*(fn(values[i]) for i in first), strict=True) if len(uniq) else ((), ())  # type: ignore[operator]
    return np.asarray(parsed, dtype=object)[inverse], np.asarray(ok, dtype=bool)[inverse]


def _float_or_none(v: object) -> tuple[object, bool]:
    if isinstance(v, bool):
        return float(v), True
    try:
        f = float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None, False
    if f != f or f in (float("inf"), float("-inf")):
        return None, False
    return f, True


def parse_numeric(values: np.ndarray, column: Column) -> Parsed:
    """Parse numbers (also numbers written as strings); ints must be whole numbers."""
    values = _as_object(values)
    missing = missing_mask(values)
    out = np.full(len(values), np.nan)
    invalid = np.zeros(len(values), dtype=bool)
    present = ~missing
    if present.any():
        sub = values[present]
        try:
            parsed = sub.astype(np.float64)
            ok = np.isfinite(parsed)
        except (TypeError, ValueError):
            objs, ok = _by_unique(sub, _float_or_none)
            parsed = np.array([np.nan if o is None else o for o in objs], dtype=np.float64)
        if column.type == "int":
            ok &= np.isfinite(parsed) & (np.floor(np.nan_to_num(parsed)) == np.nan_to_num(parsed))
        parsed = np.where(ok, parsed, np.nan)
        out[present] = parsed
        invalid[present] = ~ok
    lo = -np.inf if column.min is None else column.min
    hi = np.inf if column.max is None else column.max
    with np.errstate(invalid="ignore"):
        out_of_range = ~np.isnan(out) & ((out < lo) | (out > hi))
    kind = "whole number" if column.type == "int" else "number"
    return Parsed(out, missing, invalid, out_of_range, f"not a {kind}")


def parse_category(values: np.ndarray, column: Column) -> Parsed:
    """Strip whitespace; values outside the allowed list are invalid (case-sensitive)."""
    values = _as_object(values)
    missing = missing_mask(values)
    out = np.empty(len(values), dtype=object)
    out[:] = None
    text = np.array([str(v).strip() for v in values[~missing]], dtype=object)
    if column.values is not None:
        ok = np.isin(text, np.array(column.values, dtype=object))
    else:
        ok = np.ones(len(text), dtype=bool)
    kept = text.copy()
    kept[~ok] = None
    out[~missing] = kept
    invalid = np.zeros(len(values), dtype=bool)
    invalid[~missing] = ~ok
    reason = "not one of " + ", ".join(column.values) if column.values else "invalid"
    return Parsed(out, missing, invalid, np.zeros(len(values), dtype=bool), reason)


def _bool_or_none(v: object) -> tuple[object, bool]:
    text = str(v).strip().lower()
    if text in TRUE_TOKENS:
        return 1.0, True
    if text in FALSE_TOKENS:
        return 0.0, True
    return None, False


def parse_bool(values: np.ndarray, column: Column) -> Parsed:
    """true/false, yes/no, t/f, y/n, 1/0 (any case) become 1.0/0.0."""
    values = _as_object(values)
    missing = missing_mask(values)
    out = np.full(len(values), np.nan)
    invalid = np.zeros(len(values), dtype=bool)
    if (~missing).any():
        objs, ok = _by_unique(values[~missing], _bool_or_none)
        out[~missing] = np.array([np.nan if o is None else o for o in objs], dtype=np.float64)
        invalid[~missing] = ~ok
    return Parsed(out, missing, invalid, np.zeros(len(values), dtype=bool), "not true/false")


def parse_date(values: np.ndarray, column: Column) -> Parsed:
    """Parse with the column's strptime format; datetime values pass through."""
    values = _as_object(values)
    missing = missing_mask(values)
    fmt = column.format or "%Y-%m-%d"

    def one(v: object) -> tuple[object, bool]:
        if isinstance(v, np.datetime64):
            return v.astype("datetime64[D]"), True
        if isinstance(v, dt.datetime | dt.date):
            return np.datetime64(v, "D"), True
        try:
            return np.datetime64(dt.datetime.strptime(str(v).strip(), fmt).date(), "D"), True
        except ValueError:
            return None, False

    out = np.full(len(values), np.datetime64("NaT"), dtype="datetime64[D]")
    invalid = np.zeros(len(values), dtype=bool)
    if (~missing).any():
        objs, ok = _by_unique(values[~missing], one)
        out[~missing] = np.array(
            [np.datetime64("NaT") if o is None else o for o in objs], dtype="datetime64[D]"
        )
        invalid[~missing] = ~ok
    return Parsed(out, missing, invalid, np.zeros(len(values), dtype=bool), f"not a {fmt} date")


def parse_id(values: np.ndarray, column: Column) -> Parsed:
    values = _as_object(values)
    missing = missing_mask(values)
    out = np.array([None if m else str(v).strip() for v, m in zip(values, missing, strict=True)])
    none = np.zeros(len(values), dtype=bool)
    return Parsed(out.astype(object), missing, none, none, "")


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
    years = safe.astype("datetime64[Y]")
    months = safe.astype("datetime64[M]")
    if part == "year":
        out = years.astype(np.int64) + 1970
    elif part == "month":
        out = months.astype(np.int64) % 12 + 1
    elif part == "quarter":
        out = (months.astype(np.int64) % 12) // 3 + 1
    elif part == "day":
        out = (safe - months.astype("datetime64[D]")).astype(np.int64) + 1
    elif part == "dayofyear":
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
            out[name] = np.where(
                [v is None or v != v for v in cats], MISSING_CATEGORY, cats
            ).astype(object)
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
