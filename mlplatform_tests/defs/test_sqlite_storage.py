"""The embedded instance's SQLite storage: Dagster's layout, connections reused, fork-safe."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from pathlib import Path

import dagster as dg
import pytest

from mlplatform.defs import sqlite_files
from mlplatform.defs.runs import write_instance_yaml
from mlplatform.defs.sqlite_storage import (
    EmbeddedInstance,
    Engines,
    ReusedEventLogStorage,
    ReusedRunStorage,
    ReusedSqliteStorage,
)


@dg.asset
def one() -> int:
    return 1


def instance_at(home: Path, yaml_text: str | None = None) -> dg.DagsterInstance:
    home.mkdir(parents=True, exist_ok=True)
    if yaml_text is None:
        (home / "dagster.yaml").unlink(missing_ok=True)
        write_instance_yaml(home / "dagster.yaml")
    else:
        (home / "dagster.yaml").write_text(yaml_text)
    return dg.DagsterInstance.from_config(str(home))


def materialize_one(instance: dg.DagsterInstance) -> str:
    result = dg.materialize([one], instance=instance)
    assert result.success
    return result.run_id


def test_embedded_instance_uses_it_in_dagsters_layout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DAGSTER_HOME", raising=False)  # the folder is enough
    instance = instance_at(tmp_path)
    assert isinstance(instance, EmbeddedInstance)
    assert isinstance(instance.get_ref().storage, ReusedSqliteStorage)
    assert isinstance(instance.run_storage, ReusedRunStorage)
    run_id = materialize_one(instance)
    assert instance.get_run_by_id(run_id).is_success
    assert instance.get_latest_materialization_event(dg.AssetKey("one")).run_id == run_id
    instance.dispose()
    history = tmp_path / "history"
    assert (history / "runs.db").is_file() and (history / "runs" / f"{run_id}.db").is_file()
    assert not list(history.rglob("*-wal")), "closing checkpoints every log into its database"


def test_a_home_written_by_dagsters_default_storage_reads_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    before = instance_at(tmp_path, "telemetry:\n  enabled: false\n")
    assert not isinstance(before.get_ref().storage, ReusedSqliteStorage)
    old_run = materialize_one(before)
    before.dispose()
    after = instance_at(tmp_path)
    assert isinstance(after.get_ref().storage, ReusedSqliteStorage)
    assert after.get_run_by_id(old_run).is_success
    assert after.get_latest_materialization_event(dg.AssetKey("one")).run_id == old_run
    new_run = materialize_one(after)
    after.dispose()
    again = instance_at(tmp_path, "telemetry:\n  enabled: false\n")  # and back
    assert {r.run_id for r in again.get_runs()} == {old_run, new_run}
    again.dispose()


def test_pooled_engines_keep_their_connection_and_others_do_not(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'a.db'}"
    pooled, fresh = Engines(pooled=True), Engines(pooled=False)
    for engines in (pooled, fresh):
        with engines.transaction(url) as conn:
            conn.exec_driver_sql("CREATE TABLE IF NOT EXISTS t (x INTEGER)")
            conn.exec_driver_sql("INSERT INTO t VALUES (1)")
        assert engines.get(url) is engines.get(url)
    assert pooled.get(url).pool.checkedin() == 1
    assert fresh.get(url).pool.status().startswith("NullPool")
    with fresh.transaction(url) as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM t").scalar() == 2
    pooled.dispose()
    assert len(pooled) == 0


def test_at_most_the_newest_engines_are_kept(tmp_path: Path) -> None:
    engines = Engines(pooled=False, most=3)
    urls = [f"sqlite:///{tmp_path / f'{i}.db'}" for i in range(5)]
    made = [engines.get(u) for u in urls]
    assert len(engines) == 3
    assert engines.get(urls[-1]) is made[-1]
    assert engines.get(urls[0]) is not made[0]  # dropped, made again


def test_a_forked_child_makes_its_own_engines(tmp_path: Path) -> None:
    storage = ReusedRunStorage.from_local(str(tmp_path))
    storage.add_run(dg.DagsterRun(job_name="parent_before"))
    parent_engine = storage._engines.get(storage._conn_string)
    pid = os.fork()
    if pid == 0:  # the child: a new engine, then a write through its own connection
        code = 1
        try:
            if storage._engines.get(storage._conn_string) is not parent_engine:
                storage.add_run(dg.DagsterRun(job_name="child"))
                code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    storage.add_run(dg.DagsterRun(job_name="parent_after"))  # the parent's pool still works
    assert storage._engines.get(storage._conn_string) is parent_engine
    names = {r.job_name for r in storage.get_runs()}
    assert names == {"parent_before", "child", "parent_after"}
    storage.dispose()


def test_a_runs_events_still_wake_a_watcher(tmp_path: Path) -> None:
    """The web UI's live run view: Dagster's watcher looks for changes of ``<run_id>.db``."""
    reader, writer = ReusedEventLogStorage(str(tmp_path)), ReusedEventLogStorage(str(tmp_path))
    run_id = "0f7a1c3e-0000-4000-8000-000000000001"
    seen: list[str] = []
    got = threading.Event()

    def callback(entry: dg.EventLogEntry, _cursor: str) -> None:
        seen.append(entry.user_message)
        got.set()

    writer.store_event(log_entry(run_id, "first"))
    reader.watch(run_id, None, callback)
    time.sleep(0.5)  # the watcher is scheduled on a thread of its own
    writer.store_event(log_entry(run_id, "second"))
    assert got.wait(20), "no change of the run's database reached the watcher"
    assert "second" in seen
    reader.end_watch(run_id, callback)
    reader.dispose()
    writer.dispose()


def log_entry(run_id: str, message: str) -> dg.EventLogEntry:
    return dg.EventLogEntry(
        error_info=None,
        level="INFO",
        user_message=message,
        run_id=run_id,
        timestamp=time.time(),
    )


def test_a_runs_database_is_a_copy_of_the_first_one_dagster_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    instance = instance_at(tmp_path)
    pristine = sqlite_files.pristine_path(tmp_path / "history" / "runs")
    first = materialize_one(instance)
    assert pristine.is_file(), "the first run's database, kept while still empty"
    kept = pristine.read_bytes()
    copies = []
    real_copy = sqlite_files.copy_pristine
    monkeypatch.setattr(
        sqlite_files, "copy_pristine", lambda p, path: copies.append(path) or real_copy(p, path)
    )
    second = materialize_one(instance)
    assert [c.stem for c in copies] == [second]
    assert pristine.read_bytes() == kept
    for run_id in (first, second):
        assert instance.get_run_by_id(run_id).is_success
        assert any(
            r.event_log_entry.user_message for r in instance.get_records_for_run(run_id).records
        )
    assert instance.get_latest_materialization_event(dg.AssetKey("one")).run_id == second
    instance.dispose()


def test_pristine_copies_never_replace_a_database(tmp_path: Path) -> None:
    pristine, path = tmp_path / "pristine.sqlite", tmp_path / "run.db"
    assert not sqlite_files.copy_pristine(pristine, path)  # none kept yet
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("CREATE TABLE alembic_version (version_num TEXT)")
        conn.execute("CREATE TABLE event_logs (id INTEGER)")
        conn.commit()
    assert not sqlite_files.stamped(path), "no revision yet: Dagster makes it"
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("INSERT INTO alembic_version VALUES ('abc')")
        conn.commit()
    assert sqlite_files.stamped(path)
    sqlite_files.keep_pristine(path, pristine)
    assert pristine.read_bytes() == path.read_bytes()
    before = path.read_bytes()
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("INSERT INTO event_logs VALUES (1)")
        conn.commit()
    assert not sqlite_files.copy_pristine(pristine, path), "a database already there stays"
    assert path.read_bytes() != before
    other = tmp_path / "other.db"
    assert sqlite_files.copy_pristine(pristine, other) and sqlite_files.stamped(other)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.db", "pristine.sqlite", "run.db"]


def test_a_database_with_events_is_never_kept_as_pristine(tmp_path: Path) -> None:
    path, pristine = tmp_path / "run.db", tmp_path / "pristine.sqlite"
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("CREATE TABLE alembic_version (version_num TEXT)")
        conn.execute("INSERT INTO alembic_version VALUES ('abc')")
        conn.execute("CREATE TABLE event_logs (id INTEGER)")
        conn.execute("INSERT INTO event_logs VALUES (1)")
        conn.commit()
    sqlite_files.keep_pristine(path, pristine)
    assert not pristine.exists()
    assert not (tmp_path / "garbage.db").exists()
    (tmp_path / "garbage.db").write_bytes(b"not a database")
    assert not sqlite_files.stamped(tmp_path / "garbage.db")
    assert not sqlite_files.stamped(tmp_path / "missing.db")
    assert not (tmp_path / "missing.db").exists()


def test_a_home_in_use_opens_and_runs_without_reading_migration_scripts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Dagster's checks of databases it already made read its ~90 migration scripts each
    time; a home in use skips them (a new home still goes Dagster's way, scripts and all)."""
    from alembic.script import ScriptDirectory

    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    first = instance_at(tmp_path)
    materialize_one(first)
    first.dispose()

    def refused(*_args: object, **_kwargs: object) -> ScriptDirectory:
        raise AssertionError("a migration script directory was read")

    monkeypatch.setattr(ScriptDirectory, "from_config", refused)
    again = instance_at(tmp_path)
    run_id = materialize_one(again)
    assert again.get_run_by_id(run_id).is_success
    assert len(again.get_runs()) == 2
    again.dispose()
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "new"))
    with pytest.raises(AssertionError, match="migration script"):
        instance_at(tmp_path / "new")  # a new home: Dagster makes its databases
