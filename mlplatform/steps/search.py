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

import datetime as dt
import hashlib
import json
import logging
import math
import os
import socket
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import optuna
import pandas as pd
import sqlalchemy as sa
from optuna.trial import FrozenTrial, TrialState

from mlplatform.spec import LOWER_IS_BETTER, Candidate, ProjectSpec, SearchParam
from mlplatform.steps import candidates, evaluate
from mlplatform.steps.candidates import EpochLog, FittedModel, OnEpoch

log = logging.getLogger(__name__)

SEARCH_VERSION = 1  # bump when the meaning of a trial changes: old studies are then not resumed
HEARTBEAT_SECONDS = 15  # a RUNNING trial's process writes a heartbeat this often ...
GRACE_SECONDS = 60  # ... and the trial is failed as stale when none came for this long
SQLITE_TIMEOUT_SECONDS = 60  # wait this long for a locked SQLite database
MAX_FAILURES_WITHOUT_SUCCESS = 3  # give up early when a candidate cannot train at all
HOST_ATTR, PID_ATTR = "mlplatform.host", "mlplatform.pid"
START_ATTR, ERROR_ATTR = "mlplatform.process_start", "mlplatform.error"
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)

Fit = Callable[[pd.DataFrame, ProjectSpec, Candidate, OnEpoch | None], FittedModel]


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


# ----------------------------------------------------------------------------- space


def _primitive(value: Any) -> bool:
    return value is None or isinstance(value, bool | int | float | str)


def _encoded_choices(dim: SearchParam) -> tuple[Any, ...]:
    """Optuna stores only None/bool/int/float/str choices: anything else (lists such as
    ``hidden_layers: [[64], [64, 32]]``, mappings) is stored as its JSON text."""
    choices = tuple(dim.choices or ())
    if all(_primitive(c) for c in choices):
        return choices
    return tuple(json.dumps(c, sort_keys=True) for c in choices)


def _decode(dim: SearchParam, stored: Any) -> Any:
    if dim.type != "categorical" or all(_primitive(c) for c in dim.choices or ()):
        return stored
    return json.loads(stored)


def suggest(trial: optuna.Trial, space: Mapping[str, SearchParam]) -> dict[str, Any]:
    """Sample one value per dimension; categorical values come back as written in the spec."""
    out: dict[str, Any] = {}
    for name, dim in space.items():
        if dim.type == "categorical":
            out[name] = _decode(dim, trial.suggest_categorical(name, _encoded_choices(dim)))
        elif dim.type == "int":
            assert dim.low is not None and dim.high is not None
            out[name] = trial.suggest_int(
                name, int(dim.low), int(dim.high), step=max(1, int(dim.step or 1)), log=dim.log
            )
        else:
            assert dim.low is not None and dim.high is not None
            out[name] = trial.suggest_float(name, dim.low, dim.high, step=dim.step, log=dim.log)
    return out


def decode_params(space: Mapping[str, SearchParam], stored: Mapping[str, Any]) -> dict[str, Any]:
    """Params as Optuna stored them -> values as written in the spec."""
    return {k: _decode(space[k], v) if k in space else v for k, v in stored.items()}


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
    owner = _owner()

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


# ----------------------------------------------------------------------------- storage


def storage(url: str) -> optuna.storages.RDBStorage:
    """The search database (tables created on first use), with trial heartbeats."""
    engine_kwargs: dict[str, Any] = {}
    parsed = sa.engine.make_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine_kwargs["connect_args"] = {"timeout": SQLITE_TIMEOUT_SECONDS}
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    else:
        engine_kwargs["pool_pre_ping"] = True
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RDBStorage(
            url,
            engine_kwargs=engine_kwargs,
            heartbeat_interval=HEARTBEAT_SECONDS,
            grace_period=GRACE_SECONDS,
        )


def _process_start(pid: int) -> str | None:
    """Start time of a process in clock ticks since boot (Linux), to tell a reused pid apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2 :].split()
    return fields[19] if fields[0] != "Z" else "zombie"


def _owner() -> dict[str, Any]:
    return {
        HOST_ATTR: socket.gethostname(),
        PID_ATTR: os.getpid(),
        START_ATTR: _process_start(os.getpid()),
    }


def _owner_dead(trial: FrozenTrial) -> bool:
    """Is the trial's process gone? True when it ran on this host and its pid is dead (or
    reused), or when it never recorded an owner although it started ``GRACE_SECONDS`` ago (it
    died between being created and starting); False when unknown (the heartbeat decides)."""
    attrs = trial.user_attrs
    if PID_ATTR not in attrs:
        age = dt.datetime.now() - trial.datetime_start if trial.datetime_start else None
        return age is not None and age.total_seconds() > GRACE_SECONDS
    if attrs.get(HOST_ATTR) != socket.gethostname() or not isinstance(attrs.get(PID_ATTR), int):
        return False
    pid = attrs[PID_ATTR]
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass
    start = _process_start(pid)
    if start == "zombie":
        return True
    return start is not None and attrs.get(START_ATTR) not in (None, start)


def fail_orphans(study: optuna.Study) -> list[int]:
    """Mark FAIL the RUNNING trials whose process is gone: on this host when its pid is dead,
    elsewhere when its heartbeat is older than ``GRACE_SECONDS``. Returns their numbers.

    Heartbeats alone would leave a trial killed a moment ago RUNNING until its grace period
    ended; the pid check fails it at once when the search resumes on the same machine."""
    failed: list[int] = []
    store = study._storage
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if not _owner_dead(trial):
            continue
        try:
            store.set_trial_user_attr(trial._trial_id, ERROR_ATTR, "its process died")
            if store.set_trial_state_values(trial._trial_id, state=TrialState.FAIL):
                failed.append(trial.number)
        except optuna.exceptions.UpdateFinishedTrialError:
            pass
    before = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    after = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))}
    return sorted(set(failed) | (after - before))


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
            sampler=optuna.samplers.TPESampler(
                seed=_sampler_seed(spec.training.seed, len(existing))
            ),
            pruner=_pruner(search.n_trials, search.pruning),
        )
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
