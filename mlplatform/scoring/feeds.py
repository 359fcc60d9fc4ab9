"""Raw Arrow columns of a chunk to ONNX feeds, whole column at a time.

Text columns are parsed by the Arrow kernels of ``columnar.kernels`` (compiled from the rules
of ``columns``) and their features derived once per distinct cell of a chunk; typed columns
(a Parquet file's numbers, booleans, dates) by ``columns.parse_column``, as serving parses
JSON values.
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
from mlplatform.columns import derive_features, parse_column


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


def _values(parsed: np.ndarray | pa.Array) -> np.ndarray:
    """Parsed values as ``derive_features`` takes them (Arrow text as str/None objects)."""
    if isinstance(parsed, pa.Array):
        return np.asarray(parsed.to_numpy(zero_copy_only=False), dtype=object)
    return parsed


def _column_features(
    raw: pa.Array, name: str, schema: InputSchema, memo: dict[str, object] | None
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The model features of one raw column and its invalid mask.

    A text column without nulls is parsed and derived once per distinct cell, then spread to
    its rows (landing data repeats its values: the work runs on a few hundred cells instead of
    every row)."""
    column = schema.columns[name]
    rows = None
    if _is_text(raw) and not raw.null_count:
        encoded = pc.dictionary_encode(raw)
        rows = encoded.indices.to_numpy(zero_copy_only=False).astype(np.intp)
        raw = encoded.dictionary
    if _is_text(raw):
        text = parse_text(raw, column, memo)
        values, invalid = _values(text.values), text.invalid
    else:
        p = parse_column(raw.to_numpy(zero_copy_only=False), column)
        values, invalid = p.values, p.invalid
    feats = derive_features({name: values}, schema.columns, schema.features, [name])
    if rows is None:
        return feats, invalid
    return {k: v[rows] for k, v in feats.items()}, invalid[rows]


def chunk_feeds(
    columns: Mapping[str, pa.Array | pa.ChunkedArray],
    schema: InputSchema,
    memo: dict[str, object] | None = None,
) -> Feeds:
    """The ONNX feeds of raw columns (every feature column of ``schema``); ``memo`` keeps the
    dates of distinct texts from chunk to chunk."""
    feats: dict[str, np.ndarray] = {}
    invalid: dict[str, np.ndarray] = {}
    for name in schema.feature_columns:
        found, invalid[name] = _column_features(_plain(columns[name]), name, schema, memo)
        feats.update(found)
    inputs: dict[str, np.ndarray] = {}
    for name, kind in schema.layout:
        if kind == "numeric":
            inputs[name] = np.ascontiguousarray(feats[name], dtype=np.float32).reshape(-1, 1)
        else:
            inputs[name] = np.asarray(feats[name], dtype=object).reshape(-1, 1)
    return Feeds(inputs, invalid)
