"""Whole-column parsing of raw text with Arrow compute kernels, by the rules of ``columns``.

The token sets, the trim set and the number pattern are compiled from ``mlplatform.columns``;
what a kernel cannot decide on its own (a number in an unusual spelling such as ``1_000``, a
date) is decided by the rule function of ``columns``, once per distinct text. Results equal
``columns.parse_column`` on the same cells (a parity test holds them to it).
"""

from __future__ import annotations

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


def missing_of(text: pa.Array) -> np.ndarray:
    """Missing cells of trimmed text: nulls and the missing tokens (any case)."""
    return _mask(pc.or_kleene(pc.is_null(text), pc.is_in(pc.utf8_lower(text), value_set=_MISSING)))


def _per_distinct(
    text: pa.Array, rule: Callable[[str], object], dtype: str, memo: dict[str, object] | None
) -> np.ndarray:
    """``rule(text)`` for each cell as a ``dtype`` array (None -> NaN/NaT), computed once per
    distinct text (and once per file with a ``memo`` kept across chunks)."""
    distinct = pc.unique(text)
    empty = np.datetime64("NaT") if dtype.startswith("datetime") else np.nan
    memo = {} if memo is None or len(memo) > MEMO_LIMIT else memo
    results = []
    for t in distinct.to_pylist():
        if (r := memo.get(t, memo)) is memo:
            r = memo[t] = rule(t)
        results.append(empty if r is None else r)
    table = np.array(results, dtype=dtype)
    index = pc.index_in(text, value_set=distinct).to_numpy(zero_copy_only=False)
    return table[index.astype(np.int64)]


def parse_numbers(text: pa.Array, missing: np.ndarray, column: Column) -> ParsedText:
    plain = _mask(pc.match_substring_regex(text, _PLAIN))
    picked = pc.if_else(pa.array(plain), text, pa.scalar(None, pa.large_string()))
    values = pc.cast(picked, pa.float64())
    out = values.to_numpy(zero_copy_only=False).astype(np.float64)
    unusual = ~plain & ~missing
    if unusual.any():  # 1_000, fullwidth digits, Infinity, garbage: the rule decides
        picked = text.filter(pa.array(unusual))
        out[unusual] = _per_distinct(picked, number_of, "float64", None)
    ok = np.isfinite(out)
    if column.type == "int":
        with np.errstate(invalid="ignore"):
            ok &= np.floor(out) == out
    invalid = ~missing & ~ok
    out[~ok] = np.nan
    return ParsedText(out, missing, invalid, out_of_range(out, column), reason_of(column))


def parse_bools(text: pa.Array, missing: np.ndarray, column: Column) -> ParsedText:
    lower = pc.utf8_lower(text)
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
        days = _per_distinct(
            text.filter(pa.array(present)), lambda t: date_text_of(t, fmt), "datetime64[D]", memo
        )
        out[present] = days.astype("datetime64[s]")
        invalid[present] = np.isnat(days)
    none = np.zeros(len(text), bool)
    return ParsedText(out, missing, invalid, none, reason_of(column))


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
