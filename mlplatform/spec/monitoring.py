"""Spec section for life after deployment: the prediction log and production decay."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from mlplatform.spec.vocabulary import Frozen


class PredictionLog(Frozen):
    """What ``mlplatform serve`` records of predict requests (the privacy switch)."""

    rate: float = Field(
        default=1.0,
        ge=0,
        le=1,
        description="Share of predict requests logged (all their rows); 0 logs nothing.",
    )
    columns: tuple[str, ...] | None = Field(
        default=None,
        description="Input columns logged as received; default: the feature columns. "
        "Tokens and headers are never logged.",
    )
    queue_requests: int = Field(
        default=10_000,
        ge=1,
        description="Requests waiting for the writer at most; a sampled request that does not "
        "fit is dropped and counted, never waited for.",
    )
    queue_mb: float = Field(
        default=64.0, gt=0, description="Bytes of waiting requests (bodies and answers) at most."
    )
    flush_seconds: float = Field(
        default=5.0, gt=0, le=3600, description="How often the writer appends a Parquet file."
    )


class Decay(Frozen):
    """Production's primary metric on newly labelled data vs its holdout metric."""

    threshold: float = Field(
        default=0.05,
        gt=0,
        description="Largest drop of the primary metric (direction-aware) before "
        "production_decay fails.",
    )
    severity: Literal["warn", "error"] = Field(
        default="warn", description="warn: report only; error: a failed blocking check."
    )
    retrain: bool = Field(
        default=True, description="A failed production_decay requests a training run."
    )


PERIODS = ("daily", "partition")


class Monitoring(Frozen):
    """The prediction log written by serving and the monitoring asset that reads it."""

    period: Literal["daily", "partition"] = Field(
        default="daily",
        description="What one partition of <project>/monitoring covers: 'daily' one UTC day, "
        "'partition' one data partition (partitions.granularity, e.g. a month).",
    )
    log: PredictionLog = PredictionLog()
    decay: Decay = Decay()

    @field_validator("period", mode="before")
    @classmethod
    def _known_period(cls, v: Any) -> Any:
        if v not in PERIODS:
            raise ValueError(
                f"{v!r} is not a monitoring period; use 'daily' (one UTC day) or 'partition' "
                "(one data partition of partitions.granularity, e.g. monthly)"
            )
        return v
