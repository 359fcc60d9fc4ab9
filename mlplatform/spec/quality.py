"""Spec sections that judge a partition: quality rules and drift thresholds."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from mlplatform.spec.vocabulary import Frozen


class Quality(Frozen):
    """Rules a raw partition must meet before anything downstream runs."""

    min_rows: int = Field(default=1, ge=1)
    max_categories: int = Field(
        default=200,
        ge=2,
        description="Most distinct values a category column may have in one partition "
        "(bounds memory); per column: columns.<col>.max_categories.",
    )
    max_invalid_fraction: float = Field(
        default=0.02,
        ge=0,
        le=1,
        description="Largest share of a column's values that may be invalid "
        "(unparseable, out of range, unknown category); invalid values become missing.",
    )
    allow_duplicate_rows: bool = False
    max_missing_fraction: float = Field(
        default=0.15,
        ge=0,
        le=1,
        description="Largest share of missing values in a nullable column "
        "(columns.<col>.max_missing_fraction overrides it per column).",
    )
    partial_period_share: float = Field(
        default=0.5,
        gt=0,
        le=1,
        description="A partition with fewer rows than this share of the median of the "
        "training.window partitions before it gets a partial_period warning.",
    )


class Drift(Frozen):
    """How far a new partition's features may move from its training window."""

    psi_threshold: float = Field(
        default=0.25, gt=0, description="Population stability index per numeric feature."
    )
    share_threshold: float = Field(
        default=0.15,
        gt=0,
        le=1,
        description="Largest absolute change of any category's share in a categorical feature.",
    )
    missing_threshold: float = Field(
        default=0.1,
        gt=0,
        le=1,
        description="Largest absolute change of a feature's share of missing values.",
    )
    severity: Literal["warn", "error"] = Field(
        default="warn", description="warn: report only; error: block everything downstream."
    )
