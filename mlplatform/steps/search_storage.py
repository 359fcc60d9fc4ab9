"""Where searches are stored, and which of their trials were left RUNNING by a dead process.

The search database is Optuna's RDB storage (SQLite or PostgreSQL) with trial heartbeats; a
trial records the host, pid and process start of its owner so that a resumed search fails it
at once when that process is gone.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import warnings
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy as sa
from optuna.trial import FrozenTrial, TrialState

from mlplatform import procfs

HEARTBEAT_SECONDS = 15  # a RUNNING trial's process writes a heartbeat this often ...
GRACE_SECONDS = 60  # ... and the trial is failed as stale when none came for this long
SQLITE_TIMEOUT_SECONDS = 60  # wait this long for a locked SQLite database
HOST_ATTR, PID_ATTR = "mlplatform.host", "mlplatform.pid"
START_ATTR, ERROR_ATTR = "mlplatform.process_start", "mlplatform.error"


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
    """Start time of a process in clock ticks since boot, to tell a reused pid apart."""
    found = procfs.stat(pid)
    if found is None:
        return None
    return "zombie" if found.state == "Z" else str(found.start_ticks)


def trial_owner() -> dict[str, Any]:
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
