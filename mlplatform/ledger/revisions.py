"""The ledger's schema revision: which one a database is at, and upgrading it to the newest.

Reading the revision is plain SQL; Alembic is imported only when a database must be migrated,
so opening a ledger that is up to date (every ``predict``, ``serve`` and CLI start) skips it.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from mlplatform.ledger.names import HEAD_REVISION, VERSION_TABLE

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# Key of the PostgreSQL advisory lock that serialises concurrent migrations.
_PG_MIGRATION_LOCK = 0x6D6C_6C67


class UnknownRevisionError(Exception):
    """The database's schema revision is not one this code ships."""


def _alembic_config(connection: Connection | None = None) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@functools.cache
def head_revision() -> str:
    """The newest migration revision shipped with this code, as Alembic finds it."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    assert head is not None
    return head


def current_revision(conn: Connection) -> str | None:
    """The revision recorded in the version table (``None`` when there is none)."""
    if not sa.inspect(conn).has_table(VERSION_TABLE):
        return None
    version = sa.table(VERSION_TABLE, sa.column("version_num", sa.String))
    return conn.execute(sa.select(version.c.version_num).limit(1)).scalar_one_or_none()


def upgrade_to_head(conn: Connection) -> None:
    """Migrate to the newest revision inside the caller's write transaction (on PostgreSQL
    under an advisory lock, so concurrent openers migrate one at a time); a no-op when there."""
    if conn.dialect.name == "postgresql":
        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_PG_MIGRATION_LOCK)))
    found = current_revision(conn)
    if found == HEAD_REVISION:
        return
    from alembic import command
    from alembic.util.exc import CommandError

    try:
        command.upgrade(_alembic_config(conn), "head")
    except CommandError as exc:
        raise UnknownRevisionError(
            f"its schema is at revision {found!r}, which this version of mlplatform does not "
            f"know (its newest is {HEAD_REVISION!r}): was it written by a newer mlplatform? "
            "Upgrade mlplatform, or point MLPLATFORM_LEDGER_URL at another ledger"
        ) from exc
