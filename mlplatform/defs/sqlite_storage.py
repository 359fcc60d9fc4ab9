"""The embedded instance's SQLite storage: Dagster's own, with its connections reused.

Dagster's SQLite storages make a new SQLAlchemy engine, and a new SQLite connection, for every
statement they run: about 170 times for one partition's raw + features run, each paying the
engine's set-up, the connection's first queries and (as the last connection to a database in WAL
mode closes) a checkpoint that rewrites the database file and removes its log. Here each
database keeps one engine per process:

- the run, schedule and cross-run index databases keep a small pool of open connections;
- each run's own event database keeps no connection open: closing it still checkpoints, so the
  database file itself changes with every event, which is what the web UI's live run view
  watches for (Dagster's watcher looks at ``<run_id>.db`` only);
- after ``fork`` a child makes engines of its own; an inherited SQLite connection is never used.

The files on disk are exactly Dagster's (``history/runs.db``, ``history/runs/<run_id>.db``,
``history/runs/index.db``, ``schedules/schedules.db``): a home written by Dagster's default
storage is read as it is, and the other way round.
"""

from __future__ import annotations

import atexit
import os
import threading
import weakref
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self

import dagster as dg
import sqlalchemy as db
import yaml
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import NullPool

from mlplatform.defs import dagster_internals as di
from mlplatform.defs import sqlite_files

MODULE = __name__
RUN_SHARD_ENGINES = 64
"""Engines kept for per-run event databases (none holds a connection; the oldest is dropped)."""


class Engines:
    """One SQLAlchemy engine per database URL, made once per process.

    ``pooled`` engines keep open connections between uses; the others open and close one each
    time. At most ``most`` engines are kept (the least recently used goes first)."""

    def __init__(
        self, *, pooled: bool, connect_args: Mapping[str, Any] | None = None, most: int = 0
    ) -> None:
        self.pooled = pooled
        self.connect_args = dict(connect_args or {})
        self.most = most
        self._by_url: OrderedDict[str, Engine] = OrderedDict()
        self._lock = threading.Lock()
        self._pid = os.getpid()
        _ALL.add(self)

    def get(self, url: str) -> Engine:
        with self._lock:
            if self._pid != os.getpid():
                self._forget_inherited()
            engine = self._by_url.pop(url, None) or self._make(url)
            self._by_url[url] = engine
            if self.most and len(self._by_url) > self.most:
                _, oldest = self._by_url.popitem(last=False)
                oldest.dispose()
            return engine

    @contextmanager
    def transaction(self, url: str) -> Iterator[Connection]:
        """A connection to ``url`` inside a transaction, committed when the block ends."""
        with self.get(url).connect() as conn, conn.begin():
            yield conn

    def dispose(self) -> None:
        with self._lock:
            if self._pid != os.getpid():
                self._forget_inherited()
            for engine in self._by_url.values():
                engine.dispose()
            self._by_url.clear()

    def __len__(self) -> int:
        return len(self._by_url)

    def _make(self, url: str) -> Engine:
        if self.pooled:
            return db.create_engine(url, connect_args=self.connect_args)
        return db.create_engine(url, poolclass=NullPool, connect_args=self.connect_args)

    def _forget_inherited(self) -> None:
        """After fork: drop the parent's engines without touching its open connections."""
        for engine in self._by_url.values():
            engine.dispose(close=False)
        self._by_url.clear()
        self._pid = os.getpid()


_ALL: weakref.WeakSet[Engines] = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    """Close kept connections at exit, so each database checkpoints its log into its file."""
    for engines in list(_ALL):
        engines.dispose()


class _KeptEngines:
    """``connect()`` through a kept engine, and no set-up for a database Dagster already made:
    for Dagster's run and schedule storages, whose ``from_local`` makes or checks it."""

    DB = ""  # the database file's name, without ``.db``
    TABLES: tuple[str, ...] = ()  # tables a made database has (besides its revision)
    _conn_string: str

    def __init__(self, conn_string: str, inst_data: di.ConfigurableClassData | None = None):
        self._engines = Engines(pooled=True)
        super().__init__(conn_string, inst_data)  # type: ignore[call-arg]

    @classmethod
    def from_config_value(
        cls, inst_data: di.ConfigurableClassData | None, config_value: Mapping[str, Any]
    ) -> Self:
        return cls.from_local(inst_data=inst_data, **config_value)

    @classmethod
    def from_local(cls, base_dir: str, inst_data: di.ConfigurableClassData | None = None) -> Self:
        """Dagster's set-up, unless the database is one it already made (then all it would do
        is read its ~90 migration scripts to find the revision stamped there is current)."""
        if sqlite_files.stamped(Path(base_dir, f"{cls.DB}.db"), *cls.TABLES):
            return cls(di.create_db_conn_string(base_dir, cls.DB), inst_data)
        storage = super().from_local(base_dir, inst_data)  # type: ignore[misc]
        assert isinstance(storage, cls)
        return storage

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        with self._engines.transaction(self._conn_string) as conn:
            yield conn

    def dispose(self) -> None:
        super().dispose()  # type: ignore[misc]
        self._engines.dispose()


class ReusedRunStorage(_KeptEngines, di.SqliteRunStorage):
    """Dagster's SQLite run storage (``history/runs.db``) on a pool of connections."""

    DB, TABLES = "runs", ("runs", "instance_info")


class ReusedScheduleStorage(_KeptEngines, di.SqliteScheduleStorage):
    """Dagster's SQLite schedule and sensor storage on a pool of connections."""

    DB, TABLES = "schedules", ("jobs",)


INDEX_SHARD = "index"


class ReusedEventLogStorage(di.SqliteEventLogStorage):
    """Dagster's run-sharded SQLite event log: the cross-run index on a pool of connections,
    each run's own database through a kept engine that opens one connection per use."""

    def __init__(self, base_dir: str, inst_data: di.ConfigurableClassData | None = None):
        timeout = {"timeout": di.SQLITE_BUSY_TIMEOUT_SECONDS}
        self._index_engines = Engines(pooled=True, connect_args=timeout)
        self._run_engines = Engines(pooled=False, connect_args=timeout, most=RUN_SHARD_ENGINES)
        self._pristine = sqlite_files.pristine_path(base_dir)
        super().__init__(base_dir, inst_data)

    @classmethod
    def from_config_value(
        cls, inst_data: di.ConfigurableClassData | None, config_value: Mapping[str, Any]
    ) -> ReusedEventLogStorage:
        return cls(inst_data=inst_data, **config_value)

    @contextmanager
    def _connect(self, shard: str) -> Iterator[Connection]:
        with self._db_lock:
            engines = self._index_engines if shard == INDEX_SHARD else self._run_engines
            url = self.conn_string_for_shard(shard)
            if shard not in self._initialized_dbs:
                self._init_shard(shard, engines.get(url))
                self._initialized_dbs.add(shard)
            with engines.transaction(url) as conn:
                yield conn

    def _init_shard(self, shard: str, engine: Engine) -> None:
        """Dagster's database set-up, once per database and process: a database it already
        made is only looked at, and a run's new one is a copy of the pristine one."""
        path = Path(self.path_for_shard(shard))
        if sqlite_files.stamped(path):
            return
        if shard == INDEX_SHARD:
            self._initdb(engine)
        elif not sqlite_files.copy_pristine(self._pristine, path):
            self._initdb(engine)
            sqlite_files.keep_pristine(path, self._pristine)

    def dispose(self) -> None:
        super().dispose()
        self._index_engines.dispose()
        self._run_engines.dispose()


class ReusedSqliteStorage(di.DagsterSqliteStorage):
    """The embedded instance's storage: Dagster's SQLite layout under ``base_dir``
    (``$DAGSTER_HOME``), each part reusing its connections."""

    def __init__(self, base_dir: str, inst_data: di.ConfigurableClassData | None = None):
        self.base_dir = base_dir
        self._run_storage = ReusedRunStorage.from_local(_runs_dir(base_dir))
        self._event_log_storage = ReusedEventLogStorage(_event_logs_dir(base_dir))
        self._schedule_storage = ReusedScheduleStorage.from_local(_schedules_dir(base_dir))
        self._inst_data = inst_data
        super(di.DagsterSqliteStorage, self).__init__()  # past the parent's own storages

    @classmethod
    def from_config_value(
        cls, inst_data: di.ConfigurableClassData | None, config_value: Mapping[str, Any]
    ) -> ReusedSqliteStorage:
        return cls.from_local(inst_data=inst_data, **config_value)

    @property
    def run_storage_data(self) -> di.ConfigurableClassData:
        return _class_data("ReusedRunStorage", _runs_dir(self.base_dir))

    @property
    def event_storage_data(self) -> di.ConfigurableClassData:
        return _class_data("ReusedEventLogStorage", _event_logs_dir(self.base_dir))

    @property
    def schedule_storage_data(self) -> di.ConfigurableClassData:
        return _class_data("ReusedScheduleStorage", _schedules_dir(self.base_dir))


class EmbeddedInstance(dg.DagsterInstance):
    """The embedded instance: Dagster's own, whose default storage under its folder (the
    ``base_dir`` Dagster gives every default part) is :class:`ReusedSqliteStorage`. As an
    instance class rather than a ``storage:`` entry, it needs no ``DAGSTER_HOME`` to find its
    folder: ``DagsterInstance.from_config(folder)`` opens it too."""

    @classmethod
    def config_schema(cls) -> dict[str, Any]:
        return {}

    @staticmethod
    def config_defaults(base_dir: str) -> Mapping[str, di.ConfigurableClassData | None]:
        return {
            **di.InstanceRef.config_defaults(base_dir),
            "storage": _class_data("ReusedSqliteStorage", base_dir),
            "run_storage": _class_data("ReusedRunStorage", _runs_dir(base_dir)),
            "event_log_storage": _class_data("ReusedEventLogStorage", _event_logs_dir(base_dir)),
            "schedule_storage": _class_data("ReusedScheduleStorage", _schedules_dir(base_dir)),
        }


def _class_data(name: str, base_dir: str) -> di.ConfigurableClassData:
    return di.ConfigurableClassData(MODULE, name, yaml.safe_dump({"base_dir": base_dir}))


def _runs_dir(base_dir: str) -> str:
    return os.path.join(base_dir, "history", "")


def _event_logs_dir(base_dir: str) -> str:
    return os.path.join(base_dir, "history", "runs", "")


def _schedules_dir(base_dir: str) -> str:
    return os.path.join(base_dir, "schedules")
