"""A project's production bundle, read with no more than the question needs.

``mlplatform predict`` asks the ledger one thing per run. On the embedded home's SQLite ledger
(a plain ``sqlite:///PATH`` URL, its schema at the newest revision) the row is read with the
standard library's ``sqlite3``, read-only: no SQLAlchemy import (a fifth of a second of every
run) and no write lock. Any other case (PostgreSQL, a schema to migrate, a missing file, a
SQLite error) asks :class:`~mlplatform.ledger.Ledger`, which gives the same answer.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

from mlplatform.ledger.names import (
    HEAD_REVISION,
    PROMOTIONS_TABLE,
    SQLITE_BUSY_TIMEOUT_S,
    VERSION_TABLE,
)

_PREFIX = "sqlite:///"


class _NotAtHeadError(Exception):
    """The file's schema is not the newest: the ledger must migrate it first."""


def sqlite_file(url: str) -> Path | None:
    """The database file of a plain ``sqlite:///PATH`` URL; None for any other (another
    database, in-memory, a ``file:`` URI, query options, escaped characters)."""
    if not url.startswith(_PREFIX):
        return None
    rest = url[len(_PREFIX) :]
    if not rest or rest == ":memory:" or rest.startswith("file:") or any(c in rest for c in "?%"):
        return None
    return Path(rest)  # as SQLAlchemy opens it: no ~ expansion


def _read(path: Path, project: str) -> str | None:
    uri = f"{path.resolve().as_uri()}?mode=ro"
    with closing(sqlite3.connect(uri, uri=True, timeout=SQLITE_BUSY_TIMEOUT_S)) as conn:
        version = conn.execute(f"SELECT version_num FROM {VERSION_TABLE}").fetchall()
        if version != [(HEAD_REVISION,)]:
            raise _NotAtHeadError
        row = conn.execute(
            f"SELECT to_bundle FROM {PROMOTIONS_TABLE} WHERE project = ? ORDER BY seq DESC LIMIT 1",
            (project,),
        ).fetchone()
    return None if row is None else str(row[0])


def production_bundle(url: str, project: str) -> str | None:
    """The bundle id ``project`` serves now (its newest promotion row), or None before its
    first promotion."""
    path = sqlite_file(url)
    if path is not None and path.is_file():
        try:
            return _read(path, project)
        except (sqlite3.Error, _NotAtHeadError):
            pass  # the ledger itself says what is wrong, or migrates
    from mlplatform.ledger import Ledger

    with Ledger(url) as ledger:
        row = ledger.production(project)
    return None if row is None else row.to_bundle
