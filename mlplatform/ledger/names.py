"""Names the ledger's database is laid out by, as plain constants: readers that skip
SQLAlchemy (``pointer``) share them with the table definitions of ``schema``."""

from __future__ import annotations

VERSION_TABLE = "mlplatform_ledger_version"
# The newest migration in migrations/versions (a test keeps them equal): opening a ledger that
# is already there needs no Alembic import.
HEAD_REVISION = "0001"
DECISIONS_TABLE = "ledger_decisions"
PROMOTIONS_TABLE = "ledger_promotions"
# How long a SQLite reader or writer waits for another's lock before it fails.
SQLITE_BUSY_TIMEOUT_S = 30.0
