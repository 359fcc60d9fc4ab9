"""Model project specs: one YAML file per project, validated by pydantic (frozen, no extras).

This package's API is what it exports here; its modules hold one idea each: the vocabulary,
data (landing files, partitions, columns, features), quality and drift, training (candidates,
search), evaluation and promotion, automation, the partition calendar (periods), the project
with its cross-section checks, and loading files.
"""

from mlplatform.spec.alerts import ALERT_EVENTS, AlertEvent, Alerts
from mlplatform.spec.automation import Automation, Schedule
from mlplatform.spec.data import Column, DataSource, Features, Partitions
from mlplatform.spec.evaluation import Evaluation, Gate, Promotion
from mlplatform.spec.loading import SpecError, load_spec, load_specs, spec_files, spec_problems
from mlplatform.spec.monitoring import Decay, Monitoring, PredictionLog
from mlplatform.spec.periods import count_periods, partition_problems, period_start, shift_periods
from mlplatform.spec.project import UNVERSIONED, ProjectSpec, cross_field_problems
from mlplatform.spec.quality import Drift, Quality
from mlplatform.spec.training import Candidate, Search, SearchParam, TorchParams, Training
from mlplatform.spec.vocabulary import (
    CLASSIFICATION_METRICS,
    CLASSIFIERS,
    FIRST_DATE,
    LAST_DATE,
    LOWER_IS_BETTER,
    NAME_PATTERN,
    REGRESSION_METRICS,
    REGRESSORS,
    WEEKDAYS,
    ColumnType,
    DatePart,
    Task,
    Weekday,
)

__all__ = [
    "ALERT_EVENTS",
    "CLASSIFICATION_METRICS",
    "CLASSIFIERS",
    "FIRST_DATE",
    "LAST_DATE",
    "LOWER_IS_BETTER",
    "NAME_PATTERN",
    "REGRESSION_METRICS",
    "REGRESSORS",
    "UNVERSIONED",
    "WEEKDAYS",
    "AlertEvent",
    "Alerts",
    "Automation",
    "Candidate",
    "Column",
    "ColumnType",
    "DataSource",
    "DatePart",
    "Decay",
    "Drift",
    "Evaluation",
    "Features",
    "Gate",
    "Monitoring",
    "Partitions",
    "PredictionLog",
    "ProjectSpec",
    "Promotion",
    "Quality",
    "Schedule",
    "Search",
    "SearchParam",
    "SpecError",
    "Task",
    "TorchParams",
    "Training",
    "Weekday",
    "count_periods",
    "cross_field_problems",
    "load_spec",
    "load_specs",
    "partition_problems",
    "period_start",
    "shift_periods",
    "spec_files",
    "spec_problems",
]
