"""What a hyperparameter search reports: its trials as stored and its best params."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from mlplatform.spec import Candidate


class SearchError(RuntimeError):
    """A search that produced no usable trial (or cannot start)."""


@dataclass(frozen=True)
class TrialRecord:
    """One trial as stored: sampled params, state, objective value, per-epoch values."""

    number: int
    state: str  # COMPLETE, PRUNED, FAIL or RUNNING
    params: dict[str, Any]
    value: float | None
    seconds: float | None
    intermediate: dict[int, float] = field(default_factory=dict)
    error: str | None = None
    started: float | None = None  # unix seconds
    finished: float | None = None

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["intermediate"] = {str(k): _finite(v) for k, v in self.intermediate.items()}
        out["value"] = _finite(self.value)
        return out


OnTrial = Callable[[TrialRecord], None]


@dataclass(frozen=True)
class SearchResult:
    """The outcome of a (possibly resumed) search, ready for the training manifest."""

    candidate: str
    study_name: str
    storage: str  # URL with the password masked
    metric: str
    direction: str  # maximize | minimize
    n_trials: int
    best_trial: int
    best_value: float
    best_params: dict[str, Any]  # the sampled params of the best trial only
    params: dict[str, Any]  # base params updated with best_params: what the model uses
    complete: int
    pruned: int
    failed: int
    resumed_from: int  # finished (complete + pruned) trials before this call
    ran: int  # trials started by this call
    trials: list[TrialRecord]

    @property
    def finished(self) -> int:
        return self.complete + self.pruned

    def chosen(self, candidate: Candidate) -> Candidate:
        """The candidate with the best params, to fit on the whole training window."""
        return candidate.with_params(self.best_params)

    def to_json(self) -> dict[str, Any]:
        """JSON for the training manifest (``manifest["search"]``)."""
        out = asdict(self)
        out["best_value"] = _finite(self.best_value)
        out["trials"] = [t.to_json() for t in self.trials]
        return out


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None
