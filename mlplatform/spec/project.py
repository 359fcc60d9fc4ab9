"""A whole project spec and the checks between its sections."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, model_validator

from mlplatform.spec.alerts import Alerts
from mlplatform.spec.automation import Automation, Schedule
from mlplatform.spec.data import Column, DataSource, Features, Partitions
from mlplatform.spec.evaluation import Evaluation, Promotion
from mlplatform.spec.monitoring import Monitoring
from mlplatform.spec.periods import partition_problems
from mlplatform.spec.quality import Drift, Quality
from mlplatform.spec.training import Candidate, Training, candidate_errors
from mlplatform.spec.vocabulary import (
    CLASSIFICATION_METRICS,
    CLASSIFIERS,
    NAME_PATTERN,
    REGRESSION_METRICS,
    REGRESSORS,
    Frozen,
    Task,
)

# limits that refuse a file but never change what an accepted one becomes: raising one must
# not make every materialized partition stale
UNVERSIONED: dict[str, Any] = {"data": {"max_file_mb"}}


class ProjectSpec(Frozen):
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
    monitoring: Monitoring = Monitoring()
    automation: Automation = Automation()
    alerts: Alerts = Alerts()
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
    def logged_columns(self) -> list[str]:
        """Input columns the prediction log records (``monitoring.log.columns``)."""
        chosen = self.monitoring.log.columns
        return self.feature_columns if chosen is None else list(chosen)

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
        problems += _task_problems(task, s.get("candidates") or (), s.get("evaluation"))
    monitoring: Monitoring | None = s.get("monitoring")
    if columns is not None and monitoring is not None:
        problems += [
            ("monitoring.log.columns", f"{c!r} is not among 'columns'")
            for c in monitoring.log.columns or ()
            if c not in columns
        ]
    if s.get("partitions") is not None:
        problems += partition_problems(s["partitions"], training, partitions_set)
    return problems


def _task_problems(
    task: str, candidates: tuple[Candidate, ...], evaluation: Evaluation | None
) -> list[tuple[str, str]]:
    """Candidates and metrics that do not fit the task."""
    problems: list[tuple[str, str]] = []
    estimators = REGRESSORS if task == "regression" else CLASSIFIERS
    metrics = REGRESSION_METRICS if task == "regression" else CLASSIFICATION_METRICS
    names = [c.name for c in candidates]
    if len(set(names)) != len(names):
        problems.append(("candidates", "candidate names must be unique"))
    for i, cand in enumerate(candidates):
        problems += candidate_errors(f"candidates.{i}", cand, task, estimators)
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
