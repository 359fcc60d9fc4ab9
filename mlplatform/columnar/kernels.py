"""Whole-column parsing of raw text with Arrow compute kernels, by the rules of ``columns``.

The token sets, the trim set and the number pattern are compiled from ``mlplatform.columns``;
what a kernel cannot decide on its own (a number in an unusual spelling such as ``1_000``, a
date) is decided by the rule function of ``columns``, once per distinct text. Results equal
``columns.parse_column`` on the same cells (a parity test holds them to it).

Numbers are first read by Arrow's own cast (a correctly rounded parser, like ``float``): when
every present cell of a chunk casts, no cell needs the number pattern, since each text that
cast reads as a finite number ``float`` reads as the same number (and one it reads as infinite
or NaN is invalid either way); a chunk with any other text goes the pattern's way.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mlplatform.columns import (
    FALSE_TOKENS,
    MISSING_TOKENS,
    PLAIN_NUMBER,
    TRUE_TOKENS,
    WHITESPACE,
    date_format,
    date_text_of,
    number_of,
    out_of_range,
    reason_of,
)
from mlplatform.spec import Column

_MISSING = pa.array(MISSING_TOKENS, pa.string())
_TRUE = pa.array(TRUE_TOKENS, pa.string())
_FALSE = pa.array(FALSE_TOKENS, pa.string())
_PLAIN = f"^(?:{PLAIN_NUMBER})$"
_NULL = pa.scalar(None, pa.large_string())
MEMO_LIMIT = 1 << 18


@dataclass(frozen=True)
class ParsedText:
    """One parsed chunk of a column: typed values (float64 numpy for numbers and booleans,
    datetime64[s] numpy for dates, an Arrow string array for categories and ids; invalid
    values already missing) and boolean masks, as ``columns.Parsed``."""

    values: np.ndarray | pa.Array
    missing: np.ndarray
    invalid: np.ndarray
    out_of_range: np.ndarray
    reason: str


def _mask(array: pa.Array) -> np.ndarray:
    return np.asarray(array.fill_null(False).to_numpy(zero_copy_only=False), dtype=bool)


def trimmed(raw: pa.Array) -> pa.Array:
    """Cells without leading and trailing ``columns.WHITESPACE``."""
    return pc.utf8_trim(raw, characters=WHITESPACE)


def _lower(text: pa.Array) -> pa.Array:
    """Text lower-cased for matching the tokens: ASCII letters only, which gives the same
    matches as full lower-casing (``columns``: no other character lower-cases onto the
    letters the tokens use)."""
    return pc.ascii_lower(text)


def missing_of(text: pa.Array) -> np.ndarray:
    """Missing cells of trimmed text: nulls and the missing tokens (any case)."""
    return _mask(pc.or_kleene(pc.is_null(text), pc.is_in(_lower(text), value_set=_MISSING)))


def _per_distinct(
    text: pa.Array,
    rule: Callable[[str], object],
    dtype: str,
    memo: dict[str, object] | None,
    empty: object = np.nan,
) -> np.ndarray:
    """``rule(text)`` for each cell as a ``dtype`` array (None -> ``empty``), computed once
    per distinct text (and once per file with a ``memo`` kept across chunks)."""
    encoded = pc.dictionary_encode(text)
    memo = {} if memo is None or len(memo) > MEMO_LIMIT else memo
    results = []
    for t in encoded.dictionary.to_pylist():
        if (r := memo.get(t, memo)) is memo:
            r = memo[t] = rule(t)
        results.append(empty if r is None else r)
    table = np.array(results, dtype=dtype)
    return table[encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)]


def _cast_numbers(text: pa.Array, missing: np.ndarray) -> np.ndarray | None:
    """Every present cell read by Arrow's cast (missing ones NaN); None when any does not
    cast (the chunk then goes the pattern's way)."""
    present = text if not missing.any() else pc.if_else(pa.array(missing), _NULL, text)
    try:
        values = pc.cast(present, pa.float64())
    except pa.ArrowInvalid:
        return None
    return values.to_numpy(zero_copy_only=False).astype(np.float64)  # a copy: writable


def _pattern_numbers(text: pa.Array, missing: np.ndarray) -> np.ndarray:
    """Cells of the usual spelling read by Arrow's cast, the others by ``number_of``."""
    plain = _mask(pc.match_substring_regex(text, _PLAIN))
    picked = pc.if_else(pa.array(plain), text, pa.scalar(None, pa.large_string()))
    values = pc.cast(picked, pa.float64())
    out = values.to_numpy(zero_copy_only=False).astype(np.float64)
    unusual = ~plain & ~missing
    if unusual.any():  # 1_000, fullwidth digits, Infinity, garbage: the rule decides
        picked = text.filter(pa.array(unusual))
        out[unusual] = _per_distinct(picked, number_of, "float64", None)
    return out


def parse_numbers(text: pa.Array, missing: np.ndarray, column: Column) -> ParsedText:
    out = _cast_numbers(text, missing)
    if out is None:
        out = _pattern_numbers(text, missing)
    ok = np.isfinite(out)
    if column.type == "int":
        with np.errstate(invalid="ignore"):
            ok &= np.floor(out) == out
    invalid = ~missing & ~ok
    out[~ok] = np.nan
    return ParsedText(out, missing, invalid, out_of_range(out, column), reason_of(column))


def parse_bools(text: pa.Array, missing: np.ndarray, column: Column) -> ParsedText:
    lower = _lower(text)
    true = _mask(pc.is_in(lower, value_set=_TRUE))
    false = _mask(pc.is_in(lower, value_set=_FALSE))
    out = np.where(true, 1.0, np.where(false, 0.0, np.nan))
    invalid = ~missing & ~true & ~false
    return ParsedText(out, missing, invalid, np.zeros(len(out), bool), reason_of(column))


def parse_categories(text: pa.Array, missing: np.ndarray, column: Column) -> ParsedText:
    if column.values is None:
        ok = np.ones(len(text), dtype=bool)
    else:
        allowed = pa.array(list(column.values), pa.large_string())
        ok = _mask(pc.is_in(text, value_set=allowed))
    invalid = ~missing & ~ok
    kept = pc.if_else(pa.array(ok & ~missing), text, pa.scalar(None, pa.large_string()))
    return ParsedText(kept, missing, invalid, np.zeros(len(text), bool), reason_of(column))


def parse_ids(text: pa.Array, missing: np.ndarray, column: Column) -> ParsedText:
    kept = pc.if_else(pa.array(~missing), text, pa.scalar(None, pa.large_string()))
    none = np.zeros(len(text), bool)
    return ParsedText(kept, missing, none, none, reason_of(column))


def parse_dates(
    text: pa.Array, missing: np.ndarray, column: Column, memo: dict[str, object] | None = None
) -> ParsedText:
    fmt = date_format(column)
    out = np.full(len(text), np.datetime64("NaT"), dtype="datetime64[s]")
    invalid = np.zeros(len(text), dtype=bool)
    present = ~missing
    if present.any():
        cells = text if present.all() else text.filter(pa.array(present))
        days = _per_distinct(
            cells, lambda t: _day_number(date_text_of(t, fmt)), "int64", memo, NAT
        ).view("datetime64[D]")
        out[present] = days.astype("datetime64[s]")
        invalid[present] = np.isnat(days)
    none = np.zeros(len(text), bool)
    return ParsedText(out, missing, invalid, none, reason_of(column))


NAT = np.datetime64("NaT").view(np.int64)  # NaT as the int64 behind datetime64
EPOCH = dt.date(1970, 1, 1).toordinal()


def _day_number(day: dt.date | None) -> int | None:
    """Days since 1970-01-01 (what datetime64[D] holds): numpy turns a list of ints into an
    array at once, where it reads date objects one by one."""
    return None if day is None else day.toordinal() - EPOCH


KERNELS = {
    "float": parse_numbers,
    "int": parse_numbers,
    "bool": parse_bools,
    "category": parse_categories,
    "id": parse_ids,
    "date": parse_dates,
}


def parse_text(raw: pa.Array, column: Column, memo: dict[str, object] | None = None) -> ParsedText:
    """Parse one chunk of raw text cells (an Arrow string array) by the column's type;
    ``memo`` keeps the dates of distinct texts from chunk to chunk."""
    if isinstance(raw, pa.ChunkedArray):
        raw = raw.combine_chunks()
    text = trimmed(raw.cast(pa.large_string()))
    if column.type == "date":
        return parse_dates(text, missing_of(text), column, memo)
    return KERNELS[column.type](text, missing_of(text), column)
