"""Dagster's SQLite database files: whether one is made already, and each run's own event
database made by copying a pristine one.

Dagster makes a run's SQLite event database by creating its ~15 tables and stamping its
migration revision, which reads all ~90 of its migration scripts twice: ~0.1 s per run. The
first database Dagster makes that way in a home is kept, still empty, as
``history/.run-shard-<dagster version>.sqlite``; every later run's database is a copy of it
(the same bytes Dagster's own code wrote, for the Dagster version that wrote them).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path

import dagster as dg

SQLITE_HEADER = b"SQLite format 3\x00"


def pristine_path(event_logs_dir: str | Path) -> Path:
    """Where the pristine run database for this Dagster version is kept."""
    return Path(event_logs_dir).parent / f".run-shard-{dg.__version__}.sqlite"


def stamped(path: Path, *tables: str) -> bool:
    """Whether ``path`` is a database Dagster has already made (its revision stamped), with
    these ``tables`` too."""
    if not path.is_file() or path.stat().st_size == 0:
        return False
    try:
        with contextlib.closing(sqlite3.connect(path, timeout=30)) as conn:
            names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
            return set(tables) <= names and stamped_connection(conn)
    except sqlite3.DatabaseError:
        return False


def copy_pristine(pristine: Path, path: Path) -> bool:
    """Make ``path`` a copy of the pristine database; False when there is none yet, when
    ``path`` appeared meanwhile (another process made it: its copy is kept) or when the copy
    cannot be made (the caller then makes it as Dagster does)."""
    try:
        data = pristine.read_bytes()
    except FileNotFoundError:
        return False
    if not data.startswith(SQLITE_HEADER) or path.exists():
        return False
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        os.link(tmp, path)  # never replaces a database already there
        return True
    except OSError:  # made meanwhile, or a file system without hard links: Dagster's way
        return False
    finally:
        tmp.unlink(missing_ok=True)


def keep_pristine(path: Path, pristine: Path) -> None:
    """Keep ``path``, a database Dagster has just made, as the pristine copy (once, and only
    while it holds no event and all of it is in its file)."""
    if pristine.exists() or Path(f"{path}-wal").exists():
        return
    tmp = pristine.with_name(f"{pristine.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(path.read_bytes())
        with contextlib.closing(sqlite3.connect(tmp)) as conn:
            empty = conn.execute("SELECT count(*) FROM event_logs").fetchone()[0] == 0
            empty = empty and stamped_connection(conn)
        if empty:
            os.replace(tmp, pristine)
    except (OSError, sqlite3.DatabaseError):
        pass  # only a shortcut for later runs: they make theirs as Dagster does
    finally:
        tmp.unlink(missing_ok=True)


def stamped_connection(conn: sqlite3.Connection) -> bool:
    return conn.execute("SELECT version_num FROM alembic_version").fetchone() is not None
