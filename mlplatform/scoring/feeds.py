"""Raw Arrow columns of a chunk to ONNX feeds, whole column at a time.

Text columns are parsed by the Arrow kernels of ``columnar.kernels`` (compiled from the rules
of ``columns``), once per distinct cell of a chunk (landing data repeats its values: the
kernels then run on a few hundred texts instead of every row); typed columns (a Parquet file's
numbers, booleans, dates) by ``columns.parse_column``, as serving parses JSON values.
Features follow ``columns.derive_features``; the feeds equal ``InputSchema.model_inputs`` of
the same cells (a parity test holds them to it) without a Python loop over rows.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mlplatform.bundles.format import InputSchema
from mlplatform.columnar.kernels import parse_text
from mlplatform.columns import MISSING_CATEGORY, derive_features, parse_column
from mlplatform.spec import Column


@dataclass(frozen=True)
class Feeds:
    """ONNX inputs of one chunk, and per feature column the mask of invalid input values."""

    inputs: dict[str, np.ndarray]
    invalid: dict[str, np.ndarray]


def _is_text(array: pa.Array) -> bool:
    return bool(pa.types.is_string(array.type) or pa.types.is_large_string(array.type))


def _plain(array: pa.Array | pa.ChunkedArray) -> pa.Array:
    """One contiguous array, dictionary columns (pandas categoricals) decoded."""
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if pa.types.is_dictionary(array.type):
        array = array.cast(array.type.value_type)
    return array


def _category_texts(values: pa.Array) -> np.ndarray:
    """Category values (null = missing) as an object array of str, missing as
    ``MISSING_CATEGORY`` (as ``derive_features``)."""
    return np.array(pc.fill_null(values, MISSING_CATEGORY).to_pylist(), dtype=object)


def _parse_distinct(
    raw: pa.Array, column: Column, memo: dict[str, object] | None
) -> tuple[np.ndarray | pa.Array, np.ndarray, bool]:
    """``parse_text`` of each distinct cell, spread to every row: the values, the invalid
    mask, and whether the values are already category feeds."""
    encoded = pc.dictionary_encode(raw)
    rows = encoded.indices.to_numpy(zero_copy_only=False).astype(np.intp)
    text = parse_text(encoded.dictionary, column, memo)
    invalid = text.invalid[rows]
    if column.type == "category":
        return _category_texts(text.values)[rows], invalid, True
    if isinstance(text.values, pa.Array):  # ids
        return text.values.take(pa.array(rows)), invalid, False
    return text.values[rows], invalid, False


def chunk_feeds(
    columns: Mapping[str, pa.Array | pa.ChunkedArray],
    schema: InputSchema,
    memo: dict[str, object] | None = None,
) -> Feeds:
    """The ONNX feeds of raw columns (every feature column of ``schema``); ``memo`` keeps the
    dates of distinct texts from chunk to chunk."""
    parsed: dict[str, np.ndarray] = {}
    categories: dict[str, np.ndarray] = {}
    invalid: dict[str, np.ndarray] = {}
    for name in schema.feature_columns:
        column = schema.columns[name]
        raw = _plain(columns[name])
        if _is_text(raw) and not raw.null_count:
            values, invalid[name], fed = _parse_distinct(raw, column, memo)
        elif _is_text(raw):  # a Parquet column with nulls
            text = parse_text(raw, column, memo)
            values, invalid[name], fed = text.values, text.invalid, False
        else:
            p = parse_column(raw.to_numpy(zero_copy_only=False), column)
            values, invalid[name], fed = p.values, p.invalid, False
        if fed:
            categories[name] = np.asarray(values)
        elif column.type == "category" and isinstance(values, pa.Array):
            categories[name] = _category_texts(values)
        else:
            parsed[name] = np.asarray(values)
    rest = [n for n in schema.feature_columns if n not in categories]
    feats = {**derive_features(parsed, schema.columns, schema.features, rest), **categories}
    inputs: dict[str, np.ndarray] = {}
    for name, kind in schema.layout:
        if kind == "numeric":
            inputs[name] = np.ascontiguousarray(feats[name], dtype=np.float32).reshape(-1, 1)
        else:
            inputs[name] = np.asarray(feats[name], dtype=object).reshape(-1, 1)
    return Feeds(inputs, invalid)
