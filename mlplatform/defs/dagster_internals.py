"""The one place mlplatform reaches into Dagster's private modules (``dagster._...``).

Dagster 1.13 exposes no public API for the things below; each is used by the UI or the daemon
themselves, and a Dagster upgrade that moves one breaks this module alone:

- staleness (:class:`CachingStaleStatusResolver` and its ``Stale*`` values, with a
  :func:`loading_context`): the resolver behind the UI's "stale" badge, which ``mlplatform
  status`` and the landing schedules report the same way;
- :class:`PartitionKeyFilter`, :class:`AssetCheckExecutionRecordStatus`: filter and read the
  asset-check execution history of one partition (what failed, what only got planned);
- :class:`AssetDaemonCursor`: the type of the cursor ``dg.evaluate_automation_conditions``
  returns and takes, carried between in-process automation ticks;
- :data:`GRPC_INFO_TAG`: the run tag naming the code server a run was launched from
  (to tell whether an orphaned run's server is still alive);
- :func:`raise_interrupt_flag`, :func:`pop_captured_interrupt`: Dagster's own interrupt flag, set
  so a run being prepared stops at its first step, and cleared once in-process runs are done;
- the run launcher's interface (:class:`RunLauncher`'s :class:`LaunchRunContext`,
  :class:`CheckRunHealthResult`, :class:`WorkerStatus`, :class:`ConfigurableClassData`), and
  what ``dagster api execute_run`` does in a run worker (:func:`execute_run_body`,
  :func:`recon_job_from_origin`, :func:`capture_interrupts`): the warm run workers of
  :mod:`mlplatform.defs.fork_server` execute a run exactly as that command does;
- the embedded instance's SQLite storages (:class:`DagsterSqliteStorage` and its run, event-log
  and schedule parts, with the busy timeout Dagster gives event-log connections and its
  database URLs), which :mod:`mlplatform.defs.sqlite_storage` extends to reuse its
  connections, and :class:`InstanceRef`'s default configuration of an instance's parts, which
  its instance class starts from.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

import dagster as dg
from dagster._core.definitions.asset_daemon_cursor import AssetDaemonCursor
from dagster._core.definitions.data_version import (
    CachingStaleStatusResolver,
    StaleCause,
    StaleCauseCategory,
    StaleStatus,
)
from dagster._core.definitions.reconstruct import ReconstructableJob
from dagster._core.event_api import PartitionKeyFilter
from dagster._core.instance.ref import InstanceRef
from dagster._core.launcher import CheckRunHealthResult, LaunchRunContext, WorkerStatus
from dagster._core.loader import DataLoader, LoadingContext
from dagster._core.origin import JobPythonOrigin
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus
from dagster._core.storage.tags import GRPC_INFO_TAG
from dagster._serdes.config_class import ConfigurableClassData
from dagster._utils.hosted_user_process import recon_job_from_origin as _recon_job_from_origin
from dagster._utils.interrupts import (
    _received_interrupt,
    capture_interrupts,
    pop_captured_interrupt,
)

if TYPE_CHECKING:
    from dagster._core.storage.event_log import SqliteEventLogStorage
    from dagster._core.storage.runs import SqliteRunStorage
    from dagster._core.storage.schedules import SqliteScheduleStorage
    from dagster._core.storage.sqlite import SQLITE_BUSY_TIMEOUT_SECONDS, create_db_conn_string
    from dagster._core.storage.sqlite_storage import DagsterSqliteStorage

_ON_FIRST_USE = {
    "SqliteEventLogStorage": "dagster._core.storage.event_log",
    "SqliteRunStorage": "dagster._core.storage.runs",
    "SqliteScheduleStorage": "dagster._core.storage.schedules",
    "SQLITE_BUSY_TIMEOUT_SECONDS": "dagster._core.storage.sqlite",
    "create_db_conn_string": "dagster._core.storage.sqlite",
    "DagsterSqliteStorage": "dagster._core.storage.sqlite_storage",
}
"""The SQLite storage names, imported on first use: SQLAlchemy and Alembic (~0.2 s) load only
in processes that open an instance, not in every one that defines the assets."""


def __getattr__(name: str) -> object:
    module = _ON_FIRST_USE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [
    "EXECUTION_MODULES",
    "GRPC_INFO_TAG",
    "SQLITE_BUSY_TIMEOUT_SECONDS",
    "AssetCheckExecutionRecordStatus",
    "AssetDaemonCursor",
    "CachingStaleStatusResolver",
    "CheckRunHealthResult",
    "ConfigurableClassData",
    "DagsterSqliteStorage",
    "InstanceRef",
    "JobPythonOrigin",
    "LaunchRunContext",
    "PartitionKeyFilter",
    "ReconstructableJob",
    "SqliteEventLogStorage",
    "SqliteRunStorage",
    "SqliteScheduleStorage",
    "StaleCause",
    "StaleCauseCategory",
    "StaleStatus",
    "WorkerStatus",
    "capture_interrupts",
    "create_db_conn_string",
    "execute_run_body",
    "loading_context",
    "pop_captured_interrupt",
    "raise_interrupt_flag",
    "recon_job_from_origin",
]


class _Loading(LoadingContext):
    def __init__(self, instance: dg.DagsterInstance):
        self._instance = instance
        self._loaders: dict[type, tuple[DataLoader, object]] = {}

    @property
    def instance(self) -> dg.DagsterInstance:
        return self._instance

    @property
    def loaders(self) -> dict:
        return self._loaders


def loading_context(instance: dg.DagsterInstance) -> LoadingContext:
    """A fresh batch-loading context on ``instance``, as the stale resolver needs one."""
    return _Loading(instance)


def raise_interrupt_flag() -> None:
    """Mark an interrupt as received, as Dagster's own signal handler does."""
    _received_interrupt["received"] = True


EXECUTION_MODULES = (
    "dagster._cli.api",  # execute_run_body's
    "dagster._core.executor.in_process",
    "dagster._core.execution.plan.active",
    "dagster._core.storage.local_compute_log_manager",
)
"""Modules Dagster imports only once a run executes: a warm run worker imports them first."""


def recon_job_from_origin(origin: JobPythonOrigin) -> ReconstructableJob:
    """The job a run's code origin names, loaded as a run worker loads it."""
    return _recon_job_from_origin(origin)


def execute_run_body(run_id: str, instance: dg.DagsterInstance) -> int:
    """Execute a launched run in this process as ``dagster api execute_run`` does (its pid
    reported in an engine event, the run's events written to ``instance``); 0 on the way.
    Dagster's command line package (~0.1 s of imports) loads on first use: the CLI's own
    runs and the status commands never need it."""
    from dagster._cli.api import _execute_run_command_body

    return _execute_run_command_body(run_id, instance, lambda _event: None, False)
