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
  so a run being prepared stops at its first step, and cleared once in-process runs are done.
"""

from __future__ import annotations

import dagster as dg
from dagster._core.definitions.asset_daemon_cursor import AssetDaemonCursor
from dagster._core.definitions.data_version import (
    CachingStaleStatusResolver,
    StaleCause,
    StaleCauseCategory,
    StaleStatus,
)
from dagster._core.event_api import PartitionKeyFilter
from dagster._core.loader import DataLoader, LoadingContext
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus
from dagster._core.storage.tags import GRPC_INFO_TAG
from dagster._utils.interrupts import _received_interrupt, pop_captured_interrupt

__all__ = [
    "GRPC_INFO_TAG",
    "AssetCheckExecutionRecordStatus",
    "AssetDaemonCursor",
    "CachingStaleStatusResolver",
    "PartitionKeyFilter",
    "StaleCause",
    "StaleCauseCategory",
    "StaleStatus",
    "loading_context",
    "pop_captured_interrupt",
    "raise_interrupt_flag",
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
