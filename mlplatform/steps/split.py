"""Assemble a training window from feature partitions and record exactly what it used."""

from __future__ import annotations

from collections.abc import Mapping

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
