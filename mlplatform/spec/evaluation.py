"""Spec sections that decide a winner and its way to production: gates, promotion."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from mlplatform.spec.vocabulary import Frozen


class Gate(Frozen):
    """A metric threshold the winning candidate must meet on the holdout: absolute
    (``min``/``max``) or relative to the best baseline of the same evaluation."""

    metric: str
    min: float | None = None
    max: float | None = None
    min_lift: float | None = Field(
        default=None,
        description="The candidate's metric minus the best baseline's (direction-aware: "
        "positive = better) must be at least this.",
    )
    beat_baseline: bool = Field(
        default=False, description="The candidate must be strictly better than the best baseline."
    )

    @model_validator(mode="after")
    def _bounded(self) -> Gate:
        if (
            self.min is None
            and self.max is None
            and self.min_lift is None
            and not self.beat_baseline
        ):
            raise ValueError(
                "a gate needs at least one of 'min', 'max', 'min_lift' or 'beat_baseline: true'"
            )
        return self


class Evaluation(Frozen):
    """How candidates are ranked and gated on the out-of-time holdout."""

    primary_metric: str
    gates: tuple[Gate, ...] = ()
    max_regression: float = Field(
        default=0.0,
        ge=0,
        description="A candidate may be worse than production by at most this much.",
    )
    season: int | None = Field(
        default=None,
        ge=1,
        description="Partitions per season (e.g. 12 for monthly data with a yearly cycle): "
        "adds the seasonal-naive baseline to a regression evaluation.",
    )
    min_holdout_rows: int = Field(
        default=30, ge=1, description="A holdout with fewer rows decides no winner."
    )
    allow_perfect: bool = Field(
        default=False,
        description="Let an implausibly perfect candidate win (it is still flagged).",
    )


class Promotion(Frozen):
    """How a bundle becomes production (enforced by the promotion issue's ledger)."""

    policy: Literal["auto", "approval"] = "approval"
    approvers: int = Field(default=1, ge=1)
