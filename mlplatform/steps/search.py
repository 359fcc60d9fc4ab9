"""Hyperparameter search of one candidate with Optuna: resumable, prunable, plain functions.

A search is an Optuna *study* in the platform's search database (``Settings.search``: SQLite
under ``MLPLATFORM_HOME`` by default, PostgreSQL in production). Its name is derived from the
project, the candidate, the cutoff and a hash of everything that decides what a trial means
(search section, base params, feature rules, seed, training data), so re-materializing the same
model after a crash loads the same study and only runs the trials still missing.

Objective: the training window (rows in time order) is split into a fit part and a validation
part (its last ``search.validation_fraction`` of rows); a trial fits the candidate with the
sampled params on the fit part and scores ``search.metric`` (default: the project's primary
metric) on the validation part. The holdout never reaches this module.

Pruning: iterative candidates (torch) call ``on_epoch`` with their per-epoch validation metrics;
those are reported to Optuna and the median rule stops trials that are worse than the median of
earlier trials at the same epoch. sklearn candidates fit in one shot and report nothing, so
they are never pruned (each of their trials runs to the end).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections.abc import Callable, Mapping
from typing import Any, Literal

import numpy as np
import optuna
import pandas as pd
import sqlalchemy as sa
from optuna.trial import FrozenTrial, TrialState

from mlplatform.spec import LOWER_IS_BETTER, Candidate, ProjectSpec, Search, SearchParam
from mlplatform.steps import candidates, evaluate
from mlplatform.steps.model_types import EpochLog, FittedModel, OnEpoch
from mlplatform.steps.search_result import OnTrial, SearchError, SearchResult, TrialRecord
from mlplatform.steps.search_space import decode_params, suggest
from mlplatform.steps.search_storage import ERROR_ATTR, fail_orphans, storage, trial_owner

log = logging.getLogger(__name__)

SEARCH_VERSION = 1  # bump when the meaning of a trial changes: old studies are then not resumed
MAX_FAILURES_WITHOUT_SUCCESS = 3  # give up early when a candidate cannot train at all
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)

Fit = Callable[[pd.DataFrame, ProjectSpec, Candidate, OnEpoch | None], FittedModel]


# ----------------------------------------------------------------------------- identity


def data_key(manifest: Mapping[str, Any]) -> str:
    """Identity of a training window from its training manifest (keys, rows, data versions)."""
    ident = {k: manifest.get(k) for k in ("partitions", "rows", "data_versions")}
    return hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()


def study_name(spec: ProjectSpec, candidate: Candidate, cutoff: str, data: str) -> str:
    """Deterministic study name: ``<project>.<candidate>.<cutoff>.<hash>``.

    The hash covers the candidate (kind, estimator, base params, search section), the spec
    sections that decide what the training frame and the metric mean, the seed and ``data``
    (e.g. ``data_key(manifest)``): change any of them and a new study starts. ``n_trials`` and
    ``timeout_seconds`` are left out: they say how long to search, not what a trial means, so
    raising ``n_trials`` continues the same study.
    """
    if candidate.search is None:
        raise ValueError(f"candidate {candidate.name!r} has no 'search' section")
    ident = {
        "version": SEARCH_VERSION,
        "candidate": candidate.model_dump(
            mode="json", exclude={"search": {"n_trials", "timeout_seconds"}}
        ),
        "task": spec.task,
        "target": spec.target,
        "columns": spec.section("columns"),
        "features": spec.section("features"),
        "seed": spec.training.seed,
        "primary_metric": spec.evaluation.primary_metric,
        "data": data,
    }
    digest = hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()
    return f"{spec.name}.{candidate.name}.{cutoff}.{digest[:12]}"


def safe_url(url: str) -> str:
    """A storage URL fit for logs and manifests (password masked)."""
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL SQLAlchemy understands: show only its scheme
        return url.split("://", 1)[0] + "://..."


def search_metric(
    spec: ProjectSpec, candidate: Candidate
) -> tuple[str, Literal["minimize", "maximize"]]:
    """(metric, direction) a candidate's search optimizes."""
    assert candidate.search is not None
    metric = candidate.search.metric or spec.evaluation.primary_metric
    return metric, "minimize" if metric in LOWER_IS_BETTER else "maximize"


# ----------------------------------------------------------------------------- objective


def validation_split(
    train: pd.DataFrame, fraction: float, min_rows: int = 2
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(fit part, validation part): the validation part is the last ``fraction`` of rows."""
    n_val = round(len(train) * fraction)
    if n_val < min_rows or len(train) - n_val < min_rows:
        raise SearchError(
            f"the training window has {len(train)} rows: too few to hold out "
            f"{fraction:.0%} for validating search trials"
        )
    return train.iloc[: len(train) - n_val], train.iloc[len(train) - n_val :]


def validation_score(
    model: FittedModel, valid: pd.DataFrame, spec: ProjectSpec, metric: str
) -> float:
    """One metric of a fitted model on the validation rows."""
    out = model.predict(valid)
    y = valid[spec.target].to_numpy()
    if spec.task == "regression":
        pred = evaluate.Prediction(values=out)
    else:
        y = y.astype(str)
        pred = evaluate.Prediction(classes=model.classes, proba=out)
    return evaluate.score(y, pred, spec.task)[metric]


def _objective(
    train: pd.DataFrame,
    spec: ProjectSpec,
    candidate: Candidate,
    metric: str,
    fit: Fit,
) -> Callable[[optuna.Trial], float]:
    assert candidate.search is not None
    search = candidate.search
    fit_part, valid = validation_split(train, search.validation_fraction)
    owner = trial_owner()

    def objective(trial: optuna.Trial) -> float:
        for key, value in owner.items():
            trial.set_user_attr(key, value)

        def on_epoch(log: EpochLog) -> None:
            value = log.val_metrics.get(metric)
            if value is None or not math.isfinite(value):
                return
            trial.report(float(value), log.epoch)
            if search.pruning and trial.should_prune():
                raise optuna.TrialPruned(f"epoch {log.epoch}: validation {metric} {value:.4g}")

        try:
            sampled = suggest(trial, search.space)
            model = fit(fit_part, spec, candidate.with_params(sampled), on_epoch)
            value = float(validation_score(model, valid, spec, metric))
            if not math.isfinite(value):
                raise ValueError(f"validation {metric} is {value}")
        except optuna.TrialPruned:
            raise
        except Exception as exc:
            trial.set_user_attr(ERROR_ATTR, f"{type(exc).__name__}: {exc}"[:1000])
            raise
        return value

    return objective


def _record(trial: FrozenTrial, space: Mapping[str, SearchParam]) -> TrialRecord:
    seconds = trial.duration.total_seconds() if trial.duration is not None else None
    return TrialRecord(
        number=trial.number,
        state=trial.state.name,
        params=decode_params(space, trial.params),
        value=trial.value if trial.state == TrialState.COMPLETE else None,
        seconds=seconds,
        intermediate={int(k): float(v) for k, v in trial.intermediate_values.items()},
        error=trial.user_attrs.get(ERROR_ATTR),
        started=trial.datetime_start.timestamp() if trial.datetime_start else None,
        finished=trial.datetime_complete.timestamp() if trial.datetime_complete else None,
    )


def _sampler_seed(seed: int, existing: int) -> int:
    """Seed for this call's sampler: the spec's seed for a new study; mixed with the number of
    stored trials on resume, so a resumed search does not replay the samples it already tried."""
    if existing == 0:
        return seed
    return int(np.random.SeedSequence([seed, existing]).generate_state(1)[0])


def _pruner(n_trials: int, enabled: bool) -> optuna.pruners.BasePruner:
    """Median rule: after a few finished trials, stop a trial whose epoch-k value is worse
    than the median of earlier trials at epoch k; epochs 1 and 2 are never judged."""
    if not enabled:
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(
        n_startup_trials=max(2, min(5, n_trials // 4)), n_warmup_steps=3, interval_steps=1
    )


# ----------------------------------------------------------------------------- search


def run_search(
    train: pd.DataFrame,
    spec: ProjectSpec,
    candidate: Candidate,
    storage_url: str,
    name: str,
    *,
    on_trial: OnTrial | None = None,
    fit: Fit = candidates.fit,
) -> SearchResult:
    """Run (or resume) the search of ``candidate.search`` on a training window.

    Args:
        train: the training window (features + target), rows in time order; never the holdout.
        spec: the project.
        candidate: a candidate with a ``search`` section.
        storage_url: SQLAlchemy URL of the search database (``Settings.search``).
        name: the study name, normally ``study_name(spec, candidate, cutoff, data_key(...))``.
        on_trial: called with each trial this call finishes (COMPLETE, PRUNED or FAIL).
        fit: how a trial trains (``candidates.fit``; tests inject fakes).

    Returns:
        The best trial's params and value, trial counts and every stored trial. Trials that
        finished (COMPLETE or PRUNED) before this call are kept: only
        ``n_trials - finished`` more are run, within ``timeout_seconds`` for this call.
        Failing trials are recorded FAIL and the search goes on (at most ``2 x`` the missing
        trials are started; it stops after ``MAX_FAILURES_WITHOUT_SUCCESS`` failures while no
        trial ever completed).

    Raises:
        SearchError: no trial completed, or the window is too small to validate on.
    """
    search = candidate.search
    if search is None:
        raise ValueError(f"candidate {candidate.name!r} has no 'search' section")
    metric, direction = search_metric(spec, candidate)
    objective = _objective(train, spec, candidate, metric, fit)
    store = storage(storage_url)
    try:
        study, resumed_from = _open_study(store, name, direction, spec, search)
        missing = search.n_trials - resumed_from
        ran = 0
        if missing > 0:
            ran = _optimize(
                study,
                objective,
                search.n_trials,
                missing,
                search.timeout_seconds,
                on_trial,
                search.space,
            )
        trials = study.get_trials(deepcopy=False)
    finally:
        store.remove_session()
        store.engine.dispose()
    return _result(candidate, name, storage_url, metric, direction, trials, resumed_from, ran)


def _open_study(
    store: optuna.storages.RDBStorage,
    name: str,
    direction: Literal["minimize", "maximize"],
    spec: ProjectSpec,
    search: Search,
) -> tuple[optuna.Study, int]:
    """The study (created or resumed, orphaned trials failed) and how many trials it had
    finished before this call."""
    probe = optuna.create_study(
        storage=store, study_name=name, direction=direction, load_if_exists=True
    )
    orphans = fail_orphans(probe)
    if orphans:
        log.warning("search %s: trials %s were left RUNNING by a dead process", name, orphans)
    existing = probe.get_trials(deepcopy=False)
    resumed_from = sum(t.state in FINISHED for t in existing)
    study = optuna.load_study(
        study_name=name,
        storage=store,
        sampler=optuna.samplers.TPESampler(seed=_sampler_seed(spec.training.seed, len(existing))),
        pruner=_pruner(search.n_trials, search.pruning),
    )
    return study, resumed_from


def _optimize(
    study: optuna.Study,
    objective: Callable[[optuna.Trial], float],
    n_trials: int,
    missing: int,
    timeout: float | None,
    on_trial: OnTrial | None,
    space: Mapping[str, SearchParam],
) -> int:
    started: list[int] = []

    def after_trial(study: optuna.Study, trial: FrozenTrial) -> None:
        started.append(trial.number)
        if on_trial is not None:
            try:
                on_trial(_record(trial, space))
            except Exception:  # logging a trial must never stop the search
                log.warning("on_trial failed for trial %s", trial.number, exc_info=True)
        states = [t.state for t in study.get_trials(deepcopy=False)]
        finished = sum(s in FINISHED for s in states)
        failures_only = TrialState.COMPLETE not in states
        failed_here = sum(
            t.state == TrialState.FAIL
            for t in study.get_trials(deepcopy=False)
            if t.number in started
        )
        if finished >= n_trials or (failures_only and failed_here >= MAX_FAILURES_WITHOUT_SUCCESS):
            study.stop()

    begin = time.monotonic()
    study.optimize(
        objective,
        n_trials=2 * missing,
        timeout=timeout,
        catch=(Exception,),
        callbacks=[after_trial],
    )
    elapsed = time.monotonic() - begin
    log.info("search %s: %d trial(s) in %.1f s", study.study_name, len(started), elapsed)
    return len(started)


def _result(
    candidate: Candidate,
    name: str,
    storage_url: str,
    metric: str,
    direction: str,
    trials: list[FrozenTrial],
    resumed_from: int,
    ran: int,
) -> SearchResult:
    assert candidate.search is not None
    space = candidate.search.space
    records = [_record(t, space) for t in trials]
    done = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    counts = {s: sum(t.state == s for t in trials) for s in TrialState}
    if not done:
        errors = [r.error for r in records if r.error]
        last = f"; last error: {errors[-1]}" if errors else ""
        raise SearchError(
            f"search of candidate {candidate.name!r}: no trial completed "
            f"({counts[TrialState.PRUNED]} pruned, {counts[TrialState.FAIL]} failed){last}"
        )
    sign = 1.0 if direction == "minimize" else -1.0
    best = min(done, key=lambda t: (sign * float(t.value), t.number))  # type: ignore[arg-type]
    best_params = decode_params(space, best.params)
    return SearchResult(
        candidate=candidate.name,
        study_name=name,
        storage=safe_url(storage_url),
        metric=metric,
        direction=direction,
        n_trials=candidate.search.n_trials,
        best_trial=best.number,
        best_value=float(best.value),  # type: ignore[arg-type]
        best_params=best_params,
        params={**candidate.params, **best_params},
        complete=counts[TrialState.COMPLETE],
        pruned=counts[TrialState.PRUNED],
        failed=counts[TrialState.FAIL],
        resumed_from=resumed_from,
        ran=ran,
        trials=records,
    )
