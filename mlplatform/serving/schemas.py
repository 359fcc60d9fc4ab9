"""Request and response models of the serving API (row validation: ``serving.rows``)."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from mlplatform.bundles.format import InputSchema
from mlplatform.columns import FALSE_TOKENS, MISSING_TOKENS, TRUE_TOKENS
from mlplatform.serving.rows import ACCEPTS, MAX_ROWS


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class ColumnOut(_Out):
    """One input column a prediction row may carry."""

    name: str
    type: str
    accepts: str
    nullable: bool = Field(description="Missing values are always accepted at serving time.")
    values: list[str] | None = Field(default=None, description="Allowed category values.")
    min: float | None = Field(default=None, description="Smaller numbers are clipped/missing.")
    max: float | None = Field(default=None, description="Larger numbers are clipped/missing.")
    format: str | None = Field(default=None, description="strptime format of a date.")
    date_parts: list[str] | None = Field(default=None, description="Features derived.")


class InputSchemaOut(_Out):
    """What ``POST /v1/projects/{p}/predict`` accepts for the current production bundle."""

    columns: list[ColumnOut]
    ignored_columns: list[str] = Field(description="Known columns that are accepted and ignored.")
    out_of_range: str = Field(description="clip or missing: what happens outside [min, max].")
    missing_tokens: list[str] = list(MISSING_TOKENS)
    true_tokens: list[str] = list(TRUE_TOKENS)
    false_tokens: list[str] = list(FALSE_TOKENS)
    classes: list[str] | None = None
    max_rows: int = MAX_ROWS

    @classmethod
    def from_schema(cls, schema: InputSchema, classes: list[str] | None) -> InputSchemaOut:
        columns = []
        for name in schema.feature_columns:
            col = schema.columns[name]
            columns.append(
                ColumnOut(
                    name=name,
                    type=col.type,
                    accepts=ACCEPTS[col.type],
                    nullable=col.nullable,
                    values=list(col.values) if col.values is not None else None,
                    min=col.min,
                    max=col.max,
                    format=col.format,
                    date_parts=list(schema.features.date_parts.get(name, ()))
                    if col.type == "date"
                    else None,
                )
            )
        features = set(schema.feature_columns)
        return cls(
            columns=columns,
            ignored_columns=[c for c in schema.columns if c not in features],
            out_of_range=schema.features.out_of_range,
            classes=classes,
        )


class ProjectOut(_Out):
    name: str
    description: str
    task: str
    target: str
    production_bundle_id: str | None
    input_schema: InputSchemaOut | None


class ProjectsOut(_Out):
    projects: list[ProjectOut]


class ProjectHealth(_Out):
    bundle_id: str | None = Field(description="The bundle served now.")
    ledger_bundle_id: str | None = Field(description="The ledger's production pointer.")
    error: str | None = Field(description="Why the pointer's bundle is not served (if so).")
    checked_at: dt.datetime | None


class PredictionLogHealth(_Out):
    """Counts of a project's prediction log since the server started."""

    offered: int = Field(description="Sampled predict requests answered 200.")
    dropped: int = Field(description="Of those, dropped because the log's queue was full.")
    written_requests: int
    written_rows: int
    failed_requests: int = Field(description="Queued but lost (unreadable, or write failed).")


class ShadowHealth(_Out):
    """A project's shadow bundle in this process (counts since it was first used here)."""

    bundle_id: str | None = Field(description="The bundle attached in shadow, if any.")
    error: str | None = Field(default=None, description="Why serving does not use it.")
    predicted_requests: int = 0
    predicted_rows: int = 0
    dropped_requests: int = Field(default=0, description="Never shadowed: log queue full.")
    failed_rows: int = Field(default=0, description="Rows it could not predict.")
    last_error: str | None = None


class HealthOut(_Out):
    status: Literal["ok", "degraded"]
    watcher: bool = Field(description="The production watcher thread is running.")
    projects: dict[str, ProjectHealth]
    prediction_log: dict[str, PredictionLogHealth] = Field(
        default_factory=dict, description="Per project whose log is on (monitoring.log.rate)."
    )
    shadow: dict[str, ShadowHealth] = Field(
        default_factory=dict, description="Per project whose log is on or that has a shadow."
    )


class ClassPrediction(_Out):
    label: str
    probabilities: dict[str, float]


class ValuePrediction(_Out):
    value: float


class PredictOut(_Out):
    bundle_id: str
    predictions: list[ClassPrediction | ValuePrediction]


class DecisionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    comment: str = Field(default="", max_length=4000)


class RollbackIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    to_bundle: str | None = Field(
        default=None, description="Bundle id; null: the bundle production came from."
    )
    reason: str = Field(min_length=1, max_length=4000)


class DecisionOut(_Out):
    id: int
    project: str
    bundle_id: str
    decision: Literal["approve", "reject"]
    actor: str
    comment: str
    created_at: dt.datetime


class PromotionOut(_Out):
    id: int
    project: str
    seq: int
    from_bundle: str | None
    to_bundle: str
    actor: str
    reason: str
    kind: Literal["promote", "rollback"]
    created_at: dt.datetime


class PromotionsOut(_Out):
    project: str
    production: str | None
    promotions: list[PromotionOut] = Field(description="Oldest first; the last is production.")


class BundleSummary(_Out):
    bundle_id: str
    candidate: str | None = None
    cutoff: str | None = None
    created_at: str | None = None
    primary_metric: str | None = None
    metrics: dict[str, float | None] = {}
    gates: list[dict[str, Any]] = []

    @classmethod
    def from_manifest(cls, manifest: dict[str, Any]) -> BundleSummary:
        return cls.model_validate(
            {k: manifest.get(k) for k in cls.model_fields if manifest.get(k) is not None}
        )


class MetricComparison(_Out):
    candidate: float | None
    production: float | None
    delta: float | None = Field(description="candidate - production")


class CandidateOut(BundleSummary):
    approvals: list[DecisionOut]
    rejections: list[DecisionOut]
    previously_production: bool
    comparison: dict[str, MetricComparison]

    @classmethod
    def build(
        cls,
        manifest: dict[str, Any],
        production: BundleSummary | None,
        decisions: list[DecisionOut],
        previously_production: bool,
    ) -> CandidateOut:
        summary = BundleSummary.from_manifest(manifest)
        theirs = production.metrics if production is not None else {}
        comparison = {}
        for name in sorted(set(summary.metrics) | set(theirs)):
            a, b = summary.metrics.get(name), theirs.get(name)
            delta = a - b if a is not None and b is not None else None
            comparison[name] = MetricComparison(candidate=a, production=b, delta=delta)
        return cls(
            **summary.model_dump(),
            approvals=[d for d in decisions if d.decision == "approve"],
            rejections=[d for d in decisions if d.decision == "reject"],
            previously_production=previously_production,
            comparison=comparison,
        )


class CandidatesOut(_Out):
    project: str
    production: BundleSummary | None
    candidates: list[CandidateOut] = Field(description="Published, not production; newest first.")
