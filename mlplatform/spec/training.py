"""Spec sections about training: the window, candidates, torch params and searches."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, model_validator

from mlplatform.spec.vocabulary import (
    CLASSIFICATION_METRICS,
    NAME_PATTERN,
    REGRESSION_METRICS,
    Frozen,
)


class Training(Frozen):
    """Which partitions train a model for a cutoff and how."""

    window: int = Field(default=12, ge=1, description="Partitions before the cutoff to train on.")
    seed: int = 0
    slice_column: str | None = Field(
        default=None, description="Category column whose values get per-slice metrics."
    )
    max_rows: int | None = Field(
        default=None,
        ge=1,
        description="Most rows an sklearn candidate trains on: a seeded sample of the window, "
        "each partition contributing its share of the rows.",
    )


class TorchParams(Frozen):
    """Hyperparameters of the torch MLP candidate (standardized numerics, category embeddings)."""

    hidden_layers: tuple[Annotated[int, Field(ge=1, le=4096)], ...] = Field(
        default=(64, 32), min_length=1, description="Units of each hidden layer."
    )
    embedding_dim: int | None = Field(
        default=None,
        ge=1,
        le=256,
        description="Per-category embedding size; default min(16, ⌈n/2⌉).",
    )
    dropout: float = Field(default=0.1, ge=0, lt=1)
    learning_rate: float = Field(default=1e-3, gt=0, le=1)
    weight_decay: float = Field(default=0.0, ge=0)
    batch_size: int = Field(default=256, ge=1)
    max_epochs: int = Field(default=50, ge=1, le=10_000)
    patience: int = Field(
        default=5, ge=1, description="Epochs without improvement before stopping."
    )
    validation_fraction: float = Field(
        default=0.1,
        gt=0,
        lt=0.5,
        description="Share of the training window, taken from its end, used for early stopping.",
    )
    class_weights: Literal["balanced", "none"] = Field(
        default="balanced", description="'balanced' weights the loss by inverse class frequency."
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        default="auto", description="'auto' uses a GPU when one is present."
    )


class SearchParam(Frozen):
    """One dimension of a hyperparameter search space."""

    type: Literal["float", "int", "categorical"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = Field(default=None, gt=0)
    choices: tuple[Any, ...] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> SearchParam:
        if self.type == "categorical":
            if not self.choices:
                raise ValueError("a categorical dimension needs a non-empty 'choices' list")
            if self.low is not None or self.high is not None:
                raise ValueError("a categorical dimension takes 'choices', not 'low'/'high'")
            return self
        if self.choices is not None:
            raise ValueError(f"a {self.type} dimension takes 'low'/'high', not 'choices'")
        if self.low is None or self.high is None:
            raise ValueError(f"a {self.type} dimension needs 'low' and 'high'")
        if self.low >= self.high:
            raise ValueError(f"'low' ({self.low}) must be below 'high' ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError("a log-scaled dimension needs 'low' > 0")
        if self.log and self.step is not None:
            raise ValueError("'step' and 'log' cannot be combined")
        if self.type == "int" and self.step is not None and not float(self.step).is_integer():
            raise ValueError("an int dimension needs a whole-number 'step'")
        if self.type == "int" and not (
            float(self.low).is_integer() and float(self.high).is_integer()
        ):
            raise ValueError("an int dimension needs integer 'low' and 'high'")
        return self


class Search(Frozen):
    """Hyperparameter search of one candidate (Optuna; resumable, trials in MLflow)."""

    space: dict[str, SearchParam] = Field(min_length=1, description="Param name -> dimension.")
    n_trials: int = Field(default=20, ge=1, le=10_000, description="Finished trials wanted.")
    timeout_seconds: float | None = Field(
        default=None, gt=0, description="Stop starting new trials after this long."
    )
    metric: str | None = Field(
        default=None, description="Metric to optimize; default: evaluation.primary_metric."
    )
    validation_fraction: float = Field(
        default=0.2,
        gt=0,
        lt=0.5,
        description="Share of the training window, taken from its end, that scores trials.",
    )
    pruning: bool = Field(default=True, description="Stop hopeless trials early (median rule).")


class Candidate(Frozen):
    """One candidate model: an sklearn estimator by name, or the torch MLP."""

    name: Annotated[str, Field(pattern=NAME_PATTERN)]
    kind: Literal["sklearn", "torch"] = "sklearn"
    estimator: str | None = Field(default=None, description="sklearn estimator (kind: sklearn).")
    params: dict[str, Any] = Field(default_factory=dict)
    search: Search | None = None

    @property
    def label(self) -> str:
        """What the candidate is, for logs and reports."""
        return self.estimator if self.kind == "sklearn" and self.estimator else f"{self.kind} mlp"

    def torch_params(self) -> TorchParams:
        """Validated torch hyperparameters (kind: torch)."""
        return TorchParams.model_validate(self.params)

    def with_params(self, params: dict[str, Any]) -> Candidate:
        """This candidate with some params replaced (e.g. the best of a search)."""
        return self.model_copy(update={"params": {**self.params, **params}})


def candidate_errors(
    where: str, cand: Candidate, task: str, estimators: tuple[str, ...]
) -> list[tuple[str, str]]:
    errors: list[tuple[str, str]] = []
    if cand.kind == "sklearn" and cand.estimator not in estimators:
        errors.append(
            (
                f"{where}.estimator",
                f"{cand.estimator!r} is not a {task} estimator; "
                f"choose one of {', '.join(estimators)}",
            )
        )
    if cand.kind == "torch":
        if cand.estimator is not None:
            errors.append((f"{where}.estimator", "a torch candidate takes no estimator"))
        try:
            cand.torch_params()
        except ValidationError as exc:
            for err in exc.errors():
                field = ".".join(str(p) for p in err["loc"])
                msg = err["msg"].removeprefix("Value error, ")
                if err["type"] == "extra_forbidden":
                    known = ", ".join(TorchParams.model_fields)
                    msg = f"unknown torch param; choose from {known}"
                errors.append((f"{where}.params.{field}", msg))
    if cand.search is not None:
        metrics = REGRESSION_METRICS if task == "regression" else CLASSIFICATION_METRICS
        metric = cand.search.metric
        if metric is not None and metric not in metrics:
            errors.append(
                (
                    f"{where}.search.metric",
                    f"{metric!r} is not a {task} metric; choose one of {', '.join(metrics)}",
                )
            )
        if cand.kind == "torch":
            for name, dim in cand.search.space.items():
                if name not in TorchParams.model_fields:
                    errors.append(
                        (
                            f"{where}.search.space.{name}",
                            f"not a torch param; choose from {', '.join(TorchParams.model_fields)}",
                        )
                    )
                    continue
                try:
                    for value in _corners(dim):
                        TorchParams.model_validate({name: value})
                except ValidationError as exc:
                    reason = exc.errors()[0]["msg"].removeprefix("Value error, ")
                    errors.append((f"{where}.search.space.{name}", reason))
    return errors


def _corners(dim: SearchParam) -> tuple[Any, ...]:
    """The values a search dimension can reach at its edges (all choices if categorical)."""
    if dim.type == "categorical":
        return tuple(dim.choices or ())
    if dim.type == "int":
        return (int(dim.low or 0), int(dim.high or 0))
    return (dim.low, dim.high)
