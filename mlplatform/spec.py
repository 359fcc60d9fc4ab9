"""Model project specs: one YAML file per project, validated by pydantic (frozen, no extras)."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

NAME_PATTERN = r"^[a-z][a-z0-9_]{0,62}$"
Task = Literal["binary", "multiclass", "regression"]
ColumnType = Literal["float", "int", "category", "bool", "date", "id"]
DatePart = Literal["year", "month", "day", "dayofweek", "dayofyear", "quarter"]

CLASSIFIERS = (
    "logistic_regression",
    "random_forest_classifier",
    "hist_gradient_boosting_classifier",
    "extra_trees_classifier",
)
REGRESSORS = (
    "ridge",
    "linear_regression",
    "random_forest_regressor",
    "hist_gradient_boosting_regressor",
    "extra_trees_regressor",
)
CLASSIFICATION_METRICS = ("roc_auc", "pr_auc", "log_loss", "accuracy", "balanced_accuracy", "f1")
REGRESSION_METRICS = ("rmse", "mae", "r2")
LOWER_IS_BETTER = frozenset({"log_loss", "rmse", "mae"})


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class DataSource(_Frozen):
    """Where landing files are and how they are named and read."""

    landing: str = Field(
        description="Folder of landing files. '{home}' expands to MLPLATFORM_HOME; "
        "a relative path is relative to the spec file's folder."
    )
    format: Literal["csv", "parquet"] = "csv"
    filename: str = Field(
        default="{partition}.csv",
        description="File name per partition; '{partition}' is the partition key (YYYY-MM-DD).",
    )
    encoding: str = Field(default="utf-8", description="CSV text encoding, e.g. utf-8, latin-1.")
    delimiter: str = Field(default=",", min_length=1, max_length=1)

    @field_validator("filename")
    @classmethod
    def _has_partition(cls, v: str) -> str:
        if "{partition}" not in v:
            raise ValueError("must contain '{partition}', e.g. '{partition}.csv'")
        return v

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, v: str) -> str:
        import codecs

        try:
            codecs.lookup(v)
        except LookupError:
            raise ValueError(f"unknown text encoding {v!r}") from None
        return v


class Partitions(_Frozen):
    """Time-window partitioning of the raw data: one landing file per partition key."""

    granularity: Literal["daily", "weekly", "monthly"] = "monthly"
    start: dt.date
    end: dt.date | None = Field(
        default=None, description="Exclusive end; default: the last complete period."
    )

    @model_validator(mode="after")
    def _ordered(self) -> Partitions:
        if self.end is not None and self.end <= self.start:
            raise ValueError("'end' must be after 'start'")
        return self


class Column(_Frozen):
    """One raw column: its type and what values are valid."""

    type: ColumnType
    nullable: bool = True
    min: float | None = None
    max: float | None = None
    values: tuple[str, ...] | None = Field(
        default=None, description="Allowed values of a category column."
    )
    format: str | None = Field(
        default=None, description="strptime format of a date column, e.g. '%d/%m/%Y'."
    )

    @model_validator(mode="after")
    def _consistent(self) -> Column:
        if (self.min is not None or self.max is not None) and self.type not in ("float", "int"):
            raise ValueError(f"min/max apply to float and int columns, not {self.type}")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        if self.values is not None and self.type != "category":
            raise ValueError(f"'values' applies to category columns, not {self.type}")
        if self.format is not None and self.type != "date":
            raise ValueError(f"'format' applies to date columns, not {self.type}")
        if self.type == "date" and self.format is None:
            raise ValueError("a date column needs 'format', e.g. '%Y-%m-%d'")
        return self


class Quality(_Frozen):
    """Rules a raw partition must meet before anything downstream runs."""

    min_rows: int = Field(default=1, ge=1)
    max_invalid_fraction: float = Field(
        default=0.02,
        ge=0,
        le=1,
        description="Largest share of a column's values that may be invalid "
        "(unparseable, out of range, unknown category); invalid values become missing.",
    )
    allow_duplicate_rows: bool = False


class Features(_Frozen):
    """Cleaning and feature rules applied to every partition (and to serving input)."""

    numeric_imputation: Literal["median", "mean", "zero"] = "median"
    out_of_range: Literal["clip", "missing"] = Field(
        default="clip", description="What to do with numbers outside [min, max]."
    )
    date_parts: dict[str, tuple[DatePart, ...]] = Field(
        default_factory=dict, description="Date column -> derived parts used as features."
    )
    exclude: tuple[str, ...] = Field(
        default=(), description="Columns never used as features (ids, free text, leaks)."
    )


class Drift(_Frozen):
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
    severity: Literal["warn", "error"] = Field(
        default="warn", description="warn: report only; error: block everything downstream."
    )


class Automation(_Frozen):
    """Sensors, declarative automation and the retrain schedule of a project."""

    enabled: bool = Field(
        default=True, description="false: no landing sensor, automation or schedule runs."
    )
    sensor_interval_seconds: int = Field(default=30, ge=5)


class Training(_Frozen):
    """Which partitions train a model for a cutoff and how."""

    window: int = Field(default=12, ge=1, description="Partitions before the cutoff to train on.")
    seed: int = 0
    slice_column: str | None = Field(
        default=None, description="Category column whose values get per-slice metrics."
    )


class TorchParams(_Frozen):
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


class SearchParam(_Frozen):
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


class Search(_Frozen):
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


class Candidate(_Frozen):
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


class Gate(_Frozen):
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


class Evaluation(_Frozen):
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


class Promotion(_Frozen):
    """How a bundle becomes production (enforced by the promotion issue's ledger)."""

    policy: Literal["auto", "approval"] = "approval"
    approvers: int = Field(default=1, ge=1)


class Schedule(_Frozen):
    """Retraining schedule (cron, evaluated by the Dagster daemon)."""

    cron: str = "0 3 * * *"
    timezone: str = "UTC"

    @field_validator("cron")
    @classmethod
    def _five_fields(cls, v: str) -> str:
        if len(v.split()) != 5:
            raise ValueError("cron needs five fields, e.g. '0 3 * * *'")
        return v


class ProjectSpec(_Frozen):
    """A model project: data, cleaning, candidates, gates and policy."""

    name: Annotated[str, Field(pattern=NAME_PATTERN)]
    description: str = ""
    task: Task
    target: str
    data: DataSource
    partitions: Partitions
    columns: dict[str, Column]
    quality: Quality = Quality()
    features: Features = Features()
    training: Training = Training()
    candidates: tuple[Candidate, ...] = Field(min_length=1)
    evaluation: Evaluation
    promotion: Promotion = Promotion()
    drift: Drift = Drift()
    automation: Automation = Automation()
    schedule: Schedule | None = None
    source_file: Path | None = Field(default=None, exclude=True, description="Set by the loader.")

    @model_validator(mode="after")
    def _cross_field(self) -> ProjectSpec:
        errors: list[str] = []
        if self.target not in self.columns:
            errors.append(f"target: {self.target!r} is not among 'columns'")
        else:
            tcol = self.columns[self.target]
            if self.task == "regression" and tcol.type not in ("float", "int"):
                errors.append(f"target: a regression target must be float or int, not {tcol.type}")
            if self.task != "regression" and tcol.type not in ("category", "bool", "int"):
                errors.append(f"target: a {self.task} target must be category, bool or int")
            if self.task == "binary" and tcol.values is not None and len(tcol.values) != 2:
                errors.append(
                    f"target: a binary target needs exactly 2 values, got {len(tcol.values)}"
                )
            if self.target in self.features.exclude:
                errors.append("features.exclude: the target cannot be excluded")
        for col, _parts in self.features.date_parts.items():
            if col not in self.columns:
                errors.append(f"features.date_parts: {col!r} is not among 'columns'")
            elif self.columns[col].type != "date":
                errors.append(f"features.date_parts: {col!r} is not a date column")
        for col in self.features.exclude:
            if col not in self.columns:
                errors.append(f"features.exclude: {col!r} is not among 'columns'")
        sc = self.training.slice_column
        if sc is not None and (sc not in self.columns or self.columns[sc].type != "category"):
            errors.append(f"training.slice_column: {sc!r} is not a category column")
        estimators = REGRESSORS if self.task == "regression" else CLASSIFIERS
        names = [c.name for c in self.candidates]
        if len(set(names)) != len(names):
            errors.append("candidates: candidate names must be unique")
        for i, cand in enumerate(self.candidates):
            errors += _candidate_errors(f"candidates.{i}", cand, self.task, estimators)
        metrics = REGRESSION_METRICS if self.task == "regression" else CLASSIFICATION_METRICS
        for where, metric in [("evaluation.primary_metric", self.evaluation.primary_metric)] + [
            (f"evaluation.gates.{i}.metric", g.metric) for i, g in enumerate(self.evaluation.gates)
        ]:
            if metric not in metrics:
                errors.append(
                    f"{where}: {metric!r} is not a {self.task} metric; "
                    f"choose one of {', '.join(metrics)}"
                )
        if not self.feature_columns:
            errors.append("columns: no feature columns left after the target, ids and excludes")
        if errors:
            raise ValueError("\n".join(errors))
        return self

    @property
    def feature_columns(self) -> list[str]:
        """Raw columns that feed the model (before date parts are derived)."""
        return [
            c
            for c, col in self.columns.items()
            if c != self.target and col.type != "id" and c not in self.features.exclude
        ]

    @property
    def classes(self) -> list[str] | None:
        """Declared class labels of a classification target (None if not declared)."""
        tcol = self.columns[self.target]
        if self.task == "regression":
            return None
        if tcol.type == "bool":
            return ["false", "true"]
        return list(tcol.values) if tcol.values else None

    def landing_dir(self, home: Path) -> Path:
        """The landing folder, with '{home}' expanded and relative paths anchored."""
        raw = self.data.landing.replace("{home}", str(home))
        path = Path(raw).expanduser()
        if not path.is_absolute() and self.source_file is not None:
            path = self.source_file.parent / path
        return path

    def landing_file(self, home: Path, partition_key: str) -> Path:
        return self.landing_dir(home) / self.data.filename.format(partition=partition_key)

    def section(self, name: str) -> dict[str, Any]:
        """A JSON-able view of one top-level section (used for code versions)."""
        return self.model_dump(mode="json", include={name})


def _candidate_errors(
    where: str, cand: Candidate, task: str, estimators: tuple[str, ...]
) -> list[str]:
    errors: list[str] = []
    if cand.kind == "sklearn" and cand.estimator not in estimators:
        errors.append(
            f"{where}.estimator: {cand.estimator!r} is not a {task} "
            f"estimator; choose one of {', '.join(estimators)}"
        )
    if cand.kind == "torch":
        if cand.estimator is not None:
            errors.append(f"{where}.estimator: a torch candidate takes no estimator")
        try:
            cand.torch_params()
        except ValidationError as exc:
            for err in exc.errors():
                field = ".".join(str(p) for p in err["loc"])
                msg = err["msg"].removeprefix("Value error, ")
                if err["type"] == "extra_forbidden":
                    known = ", ".join(TorchParams.model_fields)
                    msg = f"unknown torch param; choose from {known}"
                errors.append(f"{where}.params.{field}: {msg}")
    if cand.search is not None:
        metrics = REGRESSION_METRICS if task == "regression" else CLASSIFICATION_METRICS
        metric = cand.search.metric
        if metric is not None and metric not in metrics:
            errors.append(
                f"{where}.search.metric: {metric!r} is not a {task} metric; "
                f"choose one of {', '.join(metrics)}"
            )
        if cand.kind == "torch":
            for name, dim in cand.search.space.items():
                if name not in TorchParams.model_fields:
                    errors.append(
                        f"{where}.search.space.{name}: not a torch param; choose from "
                        f"{', '.join(TorchParams.model_fields)}"
                    )
                    continue
                try:
                    for value in _corners(dim):
                        TorchParams.model_validate({name: value})
                except ValidationError as exc:
                    reason = exc.errors()[0]["msg"].removeprefix("Value error, ")
                    errors.append(f"{where}.search.space.{name}: {reason}")
    return errors


def _corners(dim: SearchParam) -> tuple[Any, ...]:
    """The values a search dimension can reach at its edges (all choices if categorical)."""
    if dim.type == "categorical":
        return tuple(dim.choices or ())
    if dim.type == "int":
        return (int(dim.low or 0), int(dim.high or 0))
    return (dim.low, dim.high)


class SpecError(Exception):
    """A spec file that cannot be used; ``problems`` lists (field path, reason)."""

    def __init__(self, path: Path, problems: list[tuple[str, str]]):
        self.path = path
        self.problems = problems
        lines = [f"{path}: {len(problems)} problem(s)"]
        lines += [f"  {loc or '<file>'}: {msg}" for loc, msg in problems]
        super().__init__("\n".join(lines))


def _loc(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(p) for p in loc)


def _problems(exc: ValidationError) -> Iterator[tuple[str, str]]:
    errors = exc.errors()
    locs = [_loc(e["loc"]) for e in errors]
    for err, loc in zip(errors, locs, strict=True):
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "too_short" and any(o != loc and o.startswith(f"{loc}.") for o in locs):
            continue  # a list whose items are invalid is not also "too short"
        if err["type"] == "extra_forbidden":
            msg = "unknown field (check the spelling; see the README's spec reference)"
        if err["type"] == "value_error" and ("\n" in msg or not loc):
            for part in msg.split("\n"):
                field, sep, reason = part.partition(": ")
                if sep and re.match(r"^[\w.]+$", field):
                    yield field, reason
                else:
                    yield loc, part
            continue
        yield loc, msg


def load_spec(path: Path | str) -> ProjectSpec:
    """Load and validate one spec file; raise SpecError naming the file, field path and reason."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(path, [("", f"cannot read: {exc}")]) from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SpecError(path, [("", f"invalid YAML: {exc}")]) from exc
    if not isinstance(data, dict):
        raise SpecError(path, [("", "expected a mapping of fields at the top level")])
    try:
        spec = ProjectSpec.model_validate({**data, "source_file": path.resolve()})
    except ValidationError as exc:
        raise SpecError(path, list(_problems(exc))) from None
    if spec.name != path.stem:
        raise SpecError(path, [("name", f"{spec.name!r} must equal the file name {path.stem!r}")])
    return spec


def spec_files(projects_dir: Path) -> list[Path]:
    """Spec files of a projects folder, sorted by name."""
    return sorted(p for p in projects_dir.glob("*.yaml") if not p.name.startswith("."))


def load_specs(projects_dir: Path) -> list[ProjectSpec]:
    """Every spec of a projects folder; the first bad file raises SpecError."""
    if not projects_dir.is_dir():
        raise SpecError(projects_dir, [("", "projects folder does not exist")])
    return [load_spec(p) for p in spec_files(projects_dir)]
