"""Table definitions of the ledger (SQLAlchemy Core). Migrations create them; see migrations/."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

from mlplatform.ledger.names import DECISIONS_TABLE, PROMOTIONS_TABLE

NAME_LENGTH = 255

DECISIONS = ("approve", "reject")
KINDS = ("promote", "rollback")


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """A timestamp that is always written as UTC and always read back timezone-aware in UTC.

    PostgreSQL keeps the offset (``timestamptz``); SQLite stores the UTC wall clock, so the
    reader re-attaches ``UTC``. Either way callers only ever see aware UTC datetimes.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("ledger timestamps must be timezone-aware")
        return value.astimezone(UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


metadata = sa.MetaData()

decisions = sa.Table(
    DECISIONS_TABLE,
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("project", sa.String(NAME_LENGTH), nullable=False),
    sa.Column("bundle_id", sa.String(NAME_LENGTH), nullable=False),
    sa.Column("decision", sa.String(16), nullable=False),
    sa.Column("actor", sa.String(NAME_LENGTH), nullable=False),
    sa.Column("comment", sa.Text, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.CheckConstraint("decision IN ('approve', 'reject')", name="ck_ledger_decisions_decision"),
    sa.Index("ix_ledger_decisions_project_bundle", "project", "bundle_id"),
)

promotions = sa.Table(
    PROMOTIONS_TABLE,
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("project", sa.String(NAME_LENGTH), nullable=False),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("from_bundle", sa.String(NAME_LENGTH), nullable=True),
    sa.Column("to_bundle", sa.String(NAME_LENGTH), nullable=False),
    sa.Column("actor", sa.String(NAME_LENGTH), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.CheckConstraint("kind IN ('promote', 'rollback')", name="ck_ledger_promotions_kind"),
    sa.UniqueConstraint("project", "seq", name="uq_ledger_promotions_project_seq"),
    sa.Index("ix_ledger_promotions_project_to_bundle", "project", "to_bundle"),
)


def own_objects(
    obj: object, name: str | None, type_: str, reflected: bool, compare_to: object
) -> bool:
    """Alembic ``include_object``: only the ledger's tables (the database it lives in may also
    hold MLflow's or Optuna's)."""
    if type_ == "table":
        return name in metadata.tables
    table = getattr(obj, "table", None)
    return table is None or table.name in metadata.tables
