"""Training one candidate: fit it, save it, and record the run (params, epochs, manifest)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import pandas as pd

from mlplatform.spec import Candidate, ProjectSpec
from mlplatform.steps import candidates
from mlplatform.steps.model_types import EpochLog, FittedModel
from mlplatform.steps.window_files import WindowFiles

if TYPE_CHECKING:
    from mlplatform.steps.search_result import SearchResult


class TrainingTracker(Protocol):
    """Where training runs are recorded (MLflow in production)."""

    def start_training(
        self, project: str, run_name: str, params: dict[str, Any], tags: dict[str, str]
    ) -> str: ...

    def log_step(self, run_id: str, metrics: dict[str, float], step: int) -> None: ...

    def finish_training(
        self,
        run_id: str,
        metrics: dict[str, float],
        manifest: dict[str, Any],
        model_files: list[Path] | None = None,
    ) -> None: ...

    def fail_run(self, run_id: str) -> None: ...


@dataclass(frozen=True)
class TrainingResult:
    """A fitted, saved candidate and what its training recorded."""

    fitted: FittedModel
    path: Path
    run_id: str
    fit_seconds: float
    manifest: dict[str, Any]


def epoch_line(candidate: str, log: EpochLog, metric: str) -> str:
    value = log.val_metrics.get(metric, float("nan"))
    return (
        f"{candidate} epoch {log.epoch}: train_loss {log.train_loss:.4f}, "
        f"val_loss {log.val_loss:.4f}, val {metric} {value:.4f} ({log.seconds:.2f} s)"
    )


def training_record(
    candidate: Candidate,
    chosen: Candidate,
    cutoff: str,
    fitted: FittedModel,
    found: SearchResult | None,
) -> dict[str, Any]:
    """What the training manifest says about the fit: the candidate, its params (``chosen``:
    with the search's best), the search and the per-epoch history."""
    record: dict[str, Any] = {
        "cutoff": cutoff,
        "candidate": candidate.name,
        "kind": candidate.kind,
        "estimator": candidate.label,
        "params": chosen.params,
    }
    if found is not None:
        record["search"] = found.to_json()
    if fitted.history:
        record["history"] = [epoch.to_json() for epoch in fitted.history]
        record["best_epoch"] = getattr(fitted, "best_epoch", None)
    return record


def train_candidate(
    train: pd.DataFrame | WindowFiles,
    spec: ProjectSpec,
    candidate: Candidate,
    cutoff: str,
    path: Path,
    manifest: dict[str, Any],
    tracker: TrainingTracker,
    found: SearchResult | None = None,
    provenance: dict[str, Any] | None = None,
    log: Callable[[str], None] = lambda _: None,
) -> TrainingResult:
    """Fit ``candidate`` (with a search's best params when ``found``) on ``train``, save it at
    ``path`` and record the run in ``tracker``: params, one step per epoch, then metrics, the
    training manifest (``manifest`` plus the candidate and ``provenance``) and the model files.
    A failed fit marks the run failed."""
    chosen = found.chosen(candidate) if found is not None else candidate
    run_id = tracker.start_training(
        spec.name,
        run_name=f"{candidate.name}-{cutoff}",
        params={
            "kind": candidate.kind,
            "estimator": candidate.label,
            "cutoff": cutoff,
            **chosen.params,
        },
        tags={"mlplatform.candidate": candidate.name, "mlplatform.cutoff": cutoff},
    )

    def on_epoch(epoch: EpochLog) -> None:
        log(epoch_line(candidate.name, epoch, spec.evaluation.primary_metric))
        metrics = {"train_loss": epoch.train_loss, "val_loss": epoch.val_loss}
        metrics |= {f"val_{k}": v for k, v in epoch.val_metrics.items()}
        tracker.log_step(run_id, metrics, step=epoch.epoch)

    try:
        started = time.perf_counter()
        fitted = candidates.fit(train, spec, chosen, on_epoch=on_epoch)
        fit_seconds = time.perf_counter() - started
        fitted.save(path)
    except BaseException:
        tracker.fail_run(run_id)
        raise
    manifest = {
        **manifest,
        **training_record(candidate, chosen, cutoff, fitted, found),
        **(provenance or {}),
        "mlflow_run_id": run_id,
    }
    model_files = sorted(p for p in path.parent.glob(f"{cutoff}.*") if p.name != f"{cutoff}.json")
    tracker.finish_training(
        run_id,
        metrics={"train_rows": float(len(train)), "fit_seconds": fit_seconds},
        manifest=manifest,
        model_files=model_files,
    )
    return TrainingResult(fitted, path, run_id, fit_seconds, manifest)
