"""Model project specs: one YAML file per project, validated by pydantic (frozen, no extras)."""

from __future__ import annotations

import datetime as dt
import re
import string
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

NAME_PATTERN = r"^[a-z][a-z0-9_]{0,62}$"
Task = Literal["binary", "multiclass", "regression"]
ColumnType = Literal["float", "int", "category", "bool", "date", "id"]
DatePart = Literal["year", "month", "day", "dayofweek", "dayofyear", "quarter"]
Weekday = Literal["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
WEEKDAYS: tuple[Weekday, ...] = Weekday.__args__  # type: ignore[attr-defined]
# Partition dates Dagster's time windows handle: four-digit years, ends before 3000.
FIRST_DATE, LAST_DATE = dt.date(1000, 1, 1), dt.date(2999, 12, 31)

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
# limits that refuse a file but never change what an accepted one becomes: raising one must
# not make every materialized partition stale
UNVERSIONED: dict[str, Any] = {"data": {"max_file_mb"}}


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
    max_file_mb: int = Field(
        default=256,
        ge=1,
        description="Largest landing file read, in MB (2^20 bytes); a larger one is refused "
        "before any byte of it is read.",
    )

    @field_validator("filename")
    @classmethod
    def _one_placeholder(cls, v: str) -> str:
        try:
            fields = [
                (name, spec, conv)
                for _, name, spec, conv in string.Formatter().parse(v)
                if name is not None
            ]
        except ValueError as exc:
            raise ValueError(
                f"{exc}; write literal braces as '{{{{' and '}}}}', e.g. '{{partition}}.csv'"
            ) from None
        others = sorted({"{" + (n or "") + "}" for n, _, _ in fields if n != "partition"})
        if others:
            raise ValueError(
                f"unknown placeholder(s) {', '.join(others)}; only '{{partition}}' is "
                "filled in (the key, YYYY-MM-DD), e.g. 'sales_{partition}.csv'"
            )
        if any(spec or conv for _, spec, conv in fields):
            raise ValueError("write '{partition}' without a format spec or conversion")
        if not fields:
            raise ValueError("must contain '{partition}', e.g. '{partition}.csv'")
        name = v.replace("{partition}", "2024-01-01")
        if "/" in name or "\\" in name:
            raise ValueError("must be a file name, not a path; put folders in data.landing")
        if name.startswith("."):
            raise ValueError("must not start with '.' (hidden files are never read)")
        if any(not ch.isprintable() for ch in name):
            raise ValueError("must not contain control characters (line breaks, tabs, escapes)")
        return v

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, v: str) -> str:
        try:
            b"x".decode(v, errors="ignore")  # non-text codecs (rot13, base64) raise here
        except LookupError:
            raise ValueError(
                f"unknown text encoding {v!r}; use a Python text codec such as utf-8 or latin-1"
            ) from None
        return v

    @field_validator("delimiter")
    @classmethod
    def _usable_delimiter(cls, v: str) -> str:
        if v in ('"', "\n", "\r"):
            raise ValueError(f"{v!r} cannot separate fields; use e.g. ',', ';' or a tab")
        return v


class Partitions(_Frozen):
    """Time-window partitioning of the raw data: one landing file per partition key."""

    granularity: Literal["daily", "weekly", "monthly"] = "monthly"
    start: dt.date = Field(description="First partition key: a period start.")
    end: dt.date | None = Field(
        default=None, description="Exclusive end; default: the last complete period."
    )
    week_starts_on: Weekday = Field(
        default="sunday", description="Weekday that weekly partition keys fall on."
    )


class Column(_Frozen):
    """One raw column: its type and what values are valid."""

    type: ColumnType
    nullable: bool = True
    min: float | None = None
    max: float | None = None
    values: tuple[str, ...] | None = Field(
        default=None, description="Allowed values of a category column."
    )
    max_categories: int | None = Field(
        default=None, ge=2, description="Most distinct values; default: quality.max_categories."
    )
    format: str | None = Field(
        default=None, description="strptime format of a date column, e.g. '%d/%m/%Y'."
    )
    max_missing_fraction: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="Largest share of missing values in this column; "
        "default: quality.max_missing_fraction.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> Column:
        if (self.min is not None or self.max is not None) and self.type not in ("float", "int"):
            raise ValueError(f"min/max apply to float and int columns, not {self.type}")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        if self.values is not None and self.type != "category":
            raise ValueError(f"'values' applies to category columns, not {self.type}")
        if self.max_categories is not None and self.type != "category":
            raise ValueError(f"'max_categories' applies to category columns, not {self.type}")
        if self.format is not None and self.type != "date":
            raise ValueError(f"'format' applies to date columns, not {self.type}")
        if self.type == "date" and self.format is None:
            raise ValueError("a date column needs 'format', e.g. '%Y-%m-%d'")
        return self


class Quality(_Frozen):
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
    missing_threshold: float = Field(
        default=0.1,
        gt=0,
        le=1,
        description="Largest absolute change of a feature's share of missing values.",
    )
    severity: Literal["warn", "error"] = Field(
        default="warn", description="warn: report only; error: block everything downstream."
    )


class Automation(_Frozen):
    """Sensors, declarative automation and the retrain schedule of a project."""

    enabled: bool = Field(
        default=True, description="false: no landing sensor, automation or schedule runs."
    )
    sensor_interval_seconds: int = Field(default=15, ge=5)


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


_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_CRON_FIELDS: tuple[tuple[str, int, int, tuple[str, ...]], ...] = (
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day of month", 1, 31, ("l",)),
    ("month", 1, 12, _MONTHS),
    ("day of week", 0, 7, _DAYS),
)


def _cron_token_ok(token: str, weekday: bool, lo: int, hi: int, words: tuple[str, ...]) -> bool:
    """One comma-separated item of a cron field: '*', 'a', 'a-b', each with an optional '/n'
    step; a day-of-week item may end in '#n' (the n-th such weekday of the month)."""
    head, nth, n = token.partition("#")
    if nth and not (weekday and n in ("1", "2", "3", "4", "5")):
        return False
    value, slash, step = head.partition("/")
    if slash and not (step.isdigit() and int(step) >= 1):
        return False
    if value in ("*", "?"):
        return True
    bounds = value.split("-")
    return len(bounds) <= 2 and all(
        b in words or (b.isdigit() and lo <= int(b) <= hi) for b in bounds
    )


class Schedule(_Frozen):
    """Retraining schedule (cron, evaluated by the Dagster daemon)."""

    cron: str = "0 3 * * *"
    timezone: str = "UTC"

    @field_validator("cron")
    @classmethod
    def _five_fields(cls, v: str) -> str:
        if len(v.split()) != 5:
            raise ValueError("cron needs five fields, e.g. '0 3 * * *'")
        for (what, lo, hi, words), field in zip(_CRON_FIELDS, v.split(), strict=True):
            for token in field.lower().split(","):
                if not _cron_token_ok(token, what == "day of week", lo, hi, words):
                    raise ValueError(
                        f"{token!r} is not a valid {what} ({lo}-{hi}, '*', ranges a-b, "
                        "lists a,b, steps */n); e.g. '0 3 * * *'"
                    )
        return v

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, v: str) -> str:
        import zoneinfo

        try:
            zoneinfo.ZoneInfo(v)
        except (ValueError, zoneinfo.ZoneInfoNotFoundError):
            raise ValueError(
                f"unknown time zone {v!r}; use an IANA name such as UTC or Europe/Berlin"
            ) from None
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
        problems = cross_field_problems(dict(self), self.partitions.model_fields_set)
        if problems:
            raise ValueError("\n".join(f"{loc}: {msg}" for loc, msg in problems))
        return self

    def category_limit(self, column: str) -> int:
        """Most distinct values category column ``column`` may have in one partition."""
        own = self.columns[column].max_categories
        return self.quality.max_categories if own is None else own

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
        """A JSON-able view of one top-level section (used for code versions), without the
        fields that only decide whether work is done, not its result."""
        return self.model_dump(mode="json", include={name}, exclude=UNVERSIONED)


def cross_field_problems(
    sections: dict[str, Any], partitions_set: set[str] | frozenset[str] = frozenset()
) -> list[tuple[str, str]]:
    """Problems between validated top-level sections, as (field path, reason).

    A check runs when the sections it reads are present, so one spec shows every problem in
    one pass even when other sections failed their own validation. In ``columns`` a declared
    column that failed its own validation is None. ``partitions_set`` names the partitions
    fields written in the file (a default is never a mistake).
    """
    s = sections
    problems: list[tuple[str, str]] = []
    task, target = s.get("task"), s.get("target")
    columns: dict[str, Column | None] | None = s.get("columns")
    features: Features | None = s.get("features")
    if columns is not None and target is not None:
        problems += _target_problems(task, target, columns, features)
    if columns is not None and features is not None:
        problems += _feature_problems(columns, features)
        if target is not None and None not in columns.values():
            ids = {c for c, col in columns.items() if col is not None and col.type == "id"}
            if not set(columns) - {target} - ids - set(features.exclude):
                problems.append(
                    ("columns", "no feature columns left after the target, ids and excludes")
                )
    training: Training | None = s.get("training")
    if columns is not None and training is not None and training.slice_column is not None:
        sc, scol = training.slice_column, columns.get(training.slice_column)
        if sc not in columns or (scol is not None and scol.type != "category"):
            problems.append(("training.slice_column", f"{sc!r} is not a category column"))
    if columns is not None and s.get("quality") is not None:
        problems += _category_limit_problems(columns, s["quality"])
    if task is not None:
        estimators = REGRESSORS if task == "regression" else CLASSIFIERS
        metrics = REGRESSION_METRICS if task == "regression" else CLASSIFICATION_METRICS
        candidates: tuple[Candidate, ...] = s.get("candidates") or ()
        names = [c.name for c in candidates]
        if len(set(names)) != len(names):
            problems.append(("candidates", "candidate names must be unique"))
        for i, cand in enumerate(candidates):
            problems += _candidate_errors(f"candidates.{i}", cand, task, estimators)
        evaluation: Evaluation | None = s.get("evaluation")
        if evaluation is not None:
            where_metric = [("evaluation.primary_metric", evaluation.primary_metric)]
            where_metric += [
                (f"evaluation.gates.{i}.metric", g.metric) for i, g in enumerate(evaluation.gates)
            ]
            problems += [
                (where, f"{m!r} is not a {task} metric; choose one of {', '.join(metrics)}")
                for where, m in where_metric
                if m not in metrics
            ]
    if s.get("partitions") is not None:
        problems += partition_problems(s["partitions"], training, partitions_set)
    return problems


def _target_problems(
    task: str | None, target: str, columns: dict[str, Column | None], features: Features | None
) -> list[tuple[str, str]]:
    if target not in columns:
        return [("target", f"{target!r} is not among 'columns'")]
    problems: list[tuple[str, str]] = []
    if features is not None and target in features.exclude:
        problems.append(("features.exclude", "the target cannot be excluded"))
    tcol = columns[target]
    if tcol is None:
        return problems
    if task == "regression" and tcol.type not in ("float", "int"):
        problems.append(("target", f"a regression target must be float or int, not {tcol.type}"))
    if task in ("binary", "multiclass") and tcol.type not in ("category", "bool", "int"):
        problems.append(("target", f"a {task} target must be category, bool or int"))
    if task == "binary" and tcol.values is not None and len(tcol.values) != 2:
        problems.append(
            ("target", f"a binary target needs exactly 2 values, got {len(tcol.values)}")
        )
    return problems


def _feature_problems(
    columns: dict[str, Column | None], features: Features
) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    for col in features.date_parts:
        declared = columns.get(col)
        if col not in columns:
            problems.append(("features.date_parts", f"{col!r} is not among 'columns'"))
        elif declared is not None and declared.type != "date":
            problems.append(("features.date_parts", f"{col!r} is not a date column"))
    for col in features.exclude:
        if col not in columns:
            problems.append(("features.exclude", f"{col!r} is not among 'columns'"))
    for col, parts in features.date_parts.items():
        for part in parts:
            if f"{col}_{part}" in columns:
                problems.append(
                    (
                        f"features.date_parts.{col}",
                        f"the derived feature {col}_{part!s} has the name of a column; "
                        f"rename column {col}_{part!s} or drop the part",
                    )
                )
    return problems


def _category_limit_problems(
    columns: dict[str, Column | None], quality: Quality
) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    for name, col in columns.items():
        if col is None:
            continue
        limit = quality.max_categories if col.max_categories is None else col.max_categories
        if col.values is not None and len(col.values) > limit:
            problems.append(
                (
                    f"columns.{name}.values",
                    f"{len(col.values)} values, above the category limit {limit}; raise "
                    f"columns.{name}.max_categories (or quality.max_categories)",
                )
            )
    return problems


def period_start(day: dt.date, granularity: str, week_starts_on: str = "sunday") -> dt.date:
    """The start of the period (partition key) that contains ``day``."""
    if granularity == "monthly":
        return day.replace(day=1)
    if granularity == "weekly":
        back = (day.weekday() - WEEKDAYS.index(week_starts_on)) % 7
        return day - dt.timedelta(days=back)
    return day


def shift_periods(day: dt.date, granularity: str, n: int) -> dt.date | None:
    """``day`` moved ``n`` periods forward; None when that leaves the calendar (year 9999)."""
    try:
        if granularity == "monthly":
            months = day.year * 12 + day.month - 1 + n
            return day.replace(year=months // 12, month=months % 12 + 1)
        return day + dt.timedelta(days=n * (7 if granularity == "weekly" else 1))
    except (OverflowError, ValueError):
        return None


def count_periods(start: dt.date, end: dt.date, granularity: str) -> int:
    """Whole periods from ``start`` (a key) to ``end`` (exclusive)."""
    if granularity == "monthly":
        return (end.year - start.year) * 12 + end.month - start.month
    return (end - start).days // (7 if granularity == "weekly" else 1)


def partition_problems(
    partitions: Partitions, training: Training | None, written: set[str] | frozenset[str]
) -> list[tuple[str, str]]:
    """Partition dates Dagster cannot make keys of, or that would leave no cutoff."""
    p = partitions
    g, problems = p.granularity, []
    span = f"between {FIRST_DATE} and {LAST_DATE}"
    if "week_starts_on" in written and g != "weekly":
        problems.append(
            (
                "partitions.week_starts_on",
                f"applies to weekly partitions only, not {g}; remove it or use weekly",
            )
        )
    for field, day in (("start", p.start), ("end", p.end)):
        if day is None:
            continue
        if not FIRST_DATE <= day <= LAST_DATE:
            problems.append((f"partitions.{field}", f"{day} is out of range; use a date {span}"))
            continue
        key = period_start(day, g, p.week_starts_on)
        if key == day:
            continue
        if g == "monthly":
            why = "monthly keys are the 1st of a month"
        else:
            why = (
                f"{day} is a {WEEKDAYS[day.weekday()].capitalize()} and weekly keys start on "
                f"{p.week_starts_on.capitalize()} (partitions.week_starts_on)"
            )
        fix = f"use {key}"
        if g == "weekly":
            fix += f" or set partitions.week_starts_on: {WEEKDAYS[day.weekday()]}"
        problems.append((f"partitions.{field}", f"not a period start: {why}; {fix}"))
    if any(f"{day} is out of range" in msg for day in (p.start, p.end) for _, msg in problems):
        return problems
    if p.end is not None and p.end <= p.start:
        return [*problems, ("partitions.end", f"{p.end} must be after 'start' ({p.start})")]
    if training is None:
        return problems
    first_cutoff = shift_periods(p.start, g, training.window)
    if first_cutoff is None or first_cutoff > LAST_DATE:
        problems.append(
            (
                "training.window",
                f"{training.window} {g} partitions after {p.start} reach past {LAST_DATE}; "
                "use a smaller window",
            )
        )
    elif p.end is not None and first_cutoff >= p.end:
        n = count_periods(p.start, p.end, g)
        problems.append(
            (
                "training.window",
                f"{training.window} is not shorter than the {n} partition(s) from "
                f"{p.start} to {p.end}: no cutoff has a full window; lower training.window "
                "or move partitions.end",
            )
        )
    return problems


def _candidate_errors(
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


class SpecError(Exception):
    """A spec file that cannot be used; ``problems`` lists (field path, reason).

    ``partial`` is the spec built, unvalidated, from the sections that did validate, when
    those include everything candidates are built from (so estimator params can still be
    checked in the same pass); None otherwise.
    """

    def __init__(
        self, path: Path, problems: list[tuple[str, str]], partial: ProjectSpec | None = None
    ):
        self.path = path
        self.problems = problems
        self.partial = partial
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


# Sections a candidate's estimator is built from (see SpecError.partial).
_BUILD_SECTIONS = ("task", "target", "columns", "features", "training", "candidates")


def _valid_sections(data: dict[str, Any]) -> tuple[dict[str, Any], set[str]]:
    """Each top-level section validated on its own (defaults for absent optional ones).

    Returns the sections that validated and the partitions fields written in the file."""
    sections: dict[str, Any] = {}
    written: set[str] = set()
    for name, info in ProjectSpec.model_fields.items():
        if name == "source_file":
            continue
        if name not in data:
            if not info.is_required():
                sections[name] = info.get_default(call_default_factory=True)
            continue
        try:
            field_type: Any = Annotated[info.annotation, info]
            value = TypeAdapter(field_type).validate_python(data[name])
        except ValidationError:
            if name == "columns" and isinstance(data[name], dict):
                sections[name] = {c: _column_or_none(col) for c, col in data[name].items()}
            continue
        sections[name] = value
        if isinstance(value, Partitions):
            written = set(value.model_fields_set)
    return sections, written


def _column_or_none(data: object) -> Column | None:
    try:
        return Column.model_validate(data)
    except ValidationError:
        return None


def spec_problems(
    path: Path, data: dict[str, Any]
) -> tuple[ProjectSpec | None, list[tuple[str, str]], ProjectSpec | None]:
    """Validate spec data read from ``path``: (spec or None, every problem, partial spec)."""
    problems: list[tuple[str, str]] = []
    name = data.get("name")
    if isinstance(name, str) and name != path.stem:
        problems.append(("name", f"{name!r} must equal the file name {path.stem!r}"))
    try:
        spec = ProjectSpec.model_validate({**data, "source_file": path.resolve()})
    except ValidationError as exc:
        problems += _problems(exc)
        sections, written = _valid_sections(data)
        if all(e["loc"] for e in exc.errors()):  # fields failed, so cross-field checks did not run
            problems += cross_field_problems(sections, written)
        partial = None
        columns_ok = None not in sections.get("columns", {}).values()
        if columns_ok and all(s in sections for s in _BUILD_SECTIONS):
            partial = ProjectSpec.model_construct(**sections, source_file=path.resolve())
        return None, list(dict.fromkeys(problems)), partial
    return (None if problems else spec), problems, spec


def load_spec(path: Path | str) -> ProjectSpec:
    """Load and validate one spec file; raise SpecError naming the file, field path and reason.

    Every problem is reported at once: field errors, and each cross-field check whose
    sections are valid on their own."""
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
    spec, problems, partial = spec_problems(path, data)
    if spec is None:
        raise SpecError(path, problems, partial)
    return spec


def spec_files(projects_dir: Path) -> list[Path]:
    """Spec files of a projects folder, sorted by name."""
    return sorted(p for p in projects_dir.glob("*.yaml") if not p.name.startswith("."))


def load_specs(projects_dir: Path) -> list[ProjectSpec]:
    """Every spec of a projects folder; the first bad file raises SpecError."""
    if not projects_dir.is_dir():
        raise SpecError(projects_dir, [("", "projects folder does not exist")])
    return [load_spec(p) for p in spec_files(projects_dir)]
