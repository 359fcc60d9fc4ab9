"""Assemble a training window from feature partitions and record exactly what it used."""

from __future__ import annotations

import zlib
from collections.abc import Mapping

import numpy as np
import pandas as pd


def training_frame(partitions: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Feature partitions concatenated in partition-key order."""
    if not partitions:
        raise ValueError("the training window holds no partitions")
    return pd.concat([partitions[k] for k in sorted(partitions)], ignore_index=True)


def training_manifest(
    partitions: Mapping[str, pd.DataFrame], data_versions: Mapping[str, str | None]
) -> dict[str, object]:
    """Exact partition keys, their row counts and data versions (raw content hashes)."""
    keys = sorted(partitions)
    return {
        "partitions": keys,
        "rows": {k: len(partitions[k]) for k in keys},
        "data_versions": {k: data_versions.get(k) for k in keys},
    }


def sampled_window(
    partitions: Mapping[str, pd.DataFrame], max_rows: int | None, seed: int
) -> tuple[dict[str, pd.DataFrame], dict[str, object] | None]:
    """At most ``max_rows`` rows of the window (see ``sampled_rows``). Returns the (possibly)
    sampled partitions and what the training manifest records about the sample (None when
    every row is kept)."""
    kept, sample = sampled_rows({k: len(f) for k, f in partitions.items()}, max_rows, seed)
    if kept is None:
        return dict(partitions), None
    out: dict[str, pd.DataFrame] = {}
    for key, rows in kept.items():
        frame = partitions[key]
        out[key] = frame.iloc[rows].reset_index(drop=True)
        out[key].attrs = dict(frame.attrs)
    return out, sample


def sampled_rows(
    sizes: Mapping[str, int], max_rows: int | None, seed: int
) -> tuple[dict[str, np.ndarray] | None, dict[str, object] | None]:
    """Which rows of each partition (``sizes``: key -> rows) a window of at most ``max_rows``
    rows keeps, stratified by partition: each partition keeps its share of the rows (largest
    remainders get the rounding), drawn without replacement by a generator seeded with
    ``seed`` and the partition key, in their original order. The same window and seed give the
    same rows. None and None when every row is kept; else the sorted row numbers per partition
    and what the training manifest records about the sample."""
    total = sum(sizes.values())
    if max_rows is None or total <= max_rows:
        return None, None
    keys = sorted(sizes)
    counts = np.array([sizes[k] for k in keys], dtype=np.int64)
    exact = max_rows * counts / total
    quota = np.floor(exact).astype(np.int64)
    extra = np.argsort(-(exact - quota), kind="stable")[: max_rows - int(quota.sum())]
    quota[extra] += 1
    kept: dict[str, np.ndarray] = {}
    for key, keep in zip(keys, quota.tolist(), strict=True):
        rng = np.random.default_rng([seed, zlib.crc32(key.encode())])
        kept[key] = np.sort(rng.choice(sizes[key], size=keep, replace=False))
    sample = {
        "max_rows": max_rows,
        "seed": seed,
        "window_rows": total,
        "rows": {k: int(q) for k, q in zip(keys, quota.tolist(), strict=True)},
    }
    return kept, sample
