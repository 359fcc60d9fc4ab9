"""The promotion ledger: approvals, rejections and an append-only production pointer.

Every promotion is a new row ``(project, seq)``; the row with the highest ``seq`` of a project
is its production pointer. ``promote`` is an atomic compare-and-swap: it reads the pointer and
inserts ``seq + 1`` in one transaction, and ``UNIQUE(project, seq)`` turns a lost race into a
:class:`PromotionConflict`. On SQLite, write transactions start with ``BEGIN IMMEDIATE`` (and a
busy timeout), so concurrent writers queue instead of failing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import EllipsisType, TracebackType
from typing import Any, Literal, Self

import sqlalchemy as sa
from sqlalchemy import event, exc
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.pool import StaticPool

from mlplatform.ledger.names import SQLITE_BUSY_TIMEOUT_S
from mlplatform.ledger.revisions import UnknownRevisionError, current_revision, upgrade_to_head
from mlplatform.ledger.schema import (
    DECISIONS,
    KINDS,
    NAME_LENGTH,
    decisions,
    promotions,
)
from mlplatform.redaction import mask_url

# Execution option that makes the SQLite "begin" hook emit BEGIN IMMEDIATE (write transactions).
_IMMEDIATE = "mlplatform_ledger_immediate"
# How often promote() without expected_from retries after losing a race on seq.
_UNCHECKED_ATTEMPTS = 5

DecisionValue = Literal["approve", "reject"]
KindValue = Literal["promote", "rollback"]


class LedgerError(Exception):
    """A ledger operation was refused: invalid input, or the database failed."""


class PromotionConflict(LedgerError):  # noqa: N818 - public API name
    """The production pointer moved since the caller looked (the compare-and-swap was lost)."""


@dataclass(frozen=True)
class Decision:
    """An approval or a rejection of one bundle of a project."""

    id: int
    project: str
    bundle_id: str
    decision: DecisionValue
    actor: str
    comment: str
    created_at: datetime  # timezone-aware UTC


@dataclass(frozen=True)
class Promotion:
    """One append-only promotion row; the newest row of a project is its production pointer."""

    id: int
    project: str
    seq: int
    from_bundle: str | None
    to_bundle: str
    actor: str
    reason: str
    kind: KindValue
    created_at: datetime  # timezone-aware UTC


def _now() -> datetime:
    return datetime.now(UTC)


def _name(field: str, value: object) -> str:
    """A non-blank identifier (project, bundle id, actor) of at most NAME_LENGTH characters."""
    if not isinstance(value, str) or not value.strip():
        raise LedgerError(f"{field} must be a non-empty string, got {value!r}")
    if len(value) > NAME_LENGTH:
        raise LedgerError(f"{field} is longer than {NAME_LENGTH} characters: {value[:40]!r}...")
    return value


def _text(field: str, value: object) -> str:
    if not isinstance(value, str):
        raise LedgerError(f"{field} must be a string, got {type(value).__name__}")
    return value


def _choice(field: str, value: object, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise LedgerError(f"{field} must be one of {', '.join(allowed)}; got {value!r}")
    return str(value)


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy emit BEGIN itself (see the "begin" hook), as the pysqlite docs describe.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
    finally:
        cursor.close()


def _sqlite_on_begin(conn: Connection) -> None:
    immediate = conn.get_execution_options().get(_IMMEDIATE, False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def _is_sqlite_memory(url: URL) -> bool:
    database = url.database or ""
    return database in ("", ":memory:") or "mode=memory" in database


def _create_engine(url: str) -> Engine:
    try:
        sa_url = make_url(url)
    except exc.ArgumentError as e:
        raise LedgerError(f"invalid ledger URL {mask_url(url)!r}: {e}") from e
    if sa_url.get_backend_name() != "sqlite":
        return sa.create_engine(sa_url, pool_pre_ping=True)
    kwargs: dict[str, Any] = {
        "connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_S, "check_same_thread": False}
    }
    if _is_sqlite_memory(sa_url):
        kwargs["poolclass"] = StaticPool  # one shared connection, else every thread sees its own
    elif sa_url.database and not sa_url.database.startswith("file:"):
        Path(sa_url.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(sa_url, **kwargs)
    event.listen(engine, "connect", _sqlite_on_connect)
    event.listen(engine, "begin", _sqlite_on_begin)
    return engine


def _decision(row: Mapping[Any, Any]) -> Decision:
    return Decision(
        id=row["id"],
        project=row["project"],
        bundle_id=row["bundle_id"],
        decision=row["decision"],
        actor=row["actor"],
        comment=row["comment"],
        created_at=row["created_at"],
    )


def _promotion(row: Mapping[Any, Any]) -> Promotion:
    return Promotion(
        id=row["id"],
        project=row["project"],
        seq=row["seq"],
        from_bundle=row["from_bundle"],
        to_bundle=row["to_bundle"],
        actor=row["actor"],
        reason=row["reason"],
        kind=row["kind"],
        created_at=row["created_at"],
    )


def _newest(conn: Connection, project: str) -> Promotion | None:
    row = (
        conn.execute(
            sa.select(promotions)
            .where(promotions.c.project == project)
            .order_by(promotions.c.seq.desc())
            .limit(1)
        )
        .mappings()
        .first()
    )
    return _promotion(row) if row is not None else None


class Ledger:
    """Approvals and promotions in a SQL database (SQLite or PostgreSQL), append-only.

    Safe to share between threads; every process opens its own ``Ledger``. ``Ledger(url)``
    upgrades the schema to the newest revision (a no-op when it already is there).
    """

    def __init__(self, url: str) -> None:
        self._engine = _create_engine(url)
        self._writer = self._engine.execution_options(**{_IMMEDIATE: True})
        try:
            self._migrate()
        except BaseException:
            self._engine.dispose()
            raise

    def __repr__(self) -> str:
        return f"Ledger({self._engine.url.render_as_string(hide_password=True)!r})"

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.dispose()

    # -- schema ------------------------------------------------------------------------------

    def _migrate(self) -> None:
        """Upgrade to head in one write transaction, so concurrent openers do it one at a time."""
        try:
            with self._writer.begin() as conn:
                upgrade_to_head(conn)
        except (exc.SQLAlchemyError, UnknownRevisionError) as e:
            raise LedgerError(f"cannot open the ledger at {self!r}: {e}") from e

    def schema_revision(self) -> str | None:
        """The revision the database is at (``None`` before the first migration)."""
        with self._engine.connect() as conn:
            return current_revision(conn)

    # -- decisions ---------------------------------------------------------------------------

    def record_decision(
        self, project: str, bundle_id: str, decision: str, actor: str, comment: str = ""
    ) -> Decision:
        """Append an approval or a rejection of ``bundle_id``."""
        values = {
            "project": _name("project", project),
            "bundle_id": _name("bundle_id", bundle_id),
            "decision": _choice("decision", decision, DECISIONS),
            "actor": _name("actor", actor),
            "comment": _text("comment", comment),
            "created_at": _now(),
        }
        try:
            with self._writer.begin() as conn:
                new_id = conn.execute(sa.insert(decisions).values(**values)).inserted_primary_key
        except exc.SQLAlchemyError as e:
            raise LedgerError(f"cannot record the decision: {e}") from e
        assert new_id is not None
        return _decision({"id": new_id[0], **values})

    def decisions(self, project: str, bundle_id: str | None = None) -> list[Decision]:
        """Decisions of a project (of one bundle when given), oldest first."""
        query = sa.select(decisions).where(decisions.c.project == project)
        if bundle_id is not None:
            query = query.where(decisions.c.bundle_id == bundle_id)
        with self._engine.connect() as conn:
            rows = conn.execute(query.order_by(decisions.c.id)).mappings().all()
        return [_decision(row) for row in rows]

    # -- promotions --------------------------------------------------------------------------

    def production(self, project: str) -> Promotion | None:
        """The production pointer: the newest promotion row of ``project``, or ``None``."""
        with self._engine.connect() as conn:
            return _newest(conn, project)

    def promote(
        self,
        project: str,
        to_bundle: str,
        actor: str,
        reason: str,
        *,
        kind: str = "promote",
        expected_from: str | EllipsisType | None = ...,
    ) -> Promotion:
        """Append a promotion row that makes ``to_bundle`` production (atomic compare-and-swap).

        ``expected_from`` is the bundle the caller believes is production now (``None``: no
        production yet); if the pointer differs, :class:`PromotionConflict` is raised and
        nothing is written. Without it, the pointer moves from whatever it is (a lost race on
        ``seq`` is retried). A rollback is the same append with ``kind="rollback"``.
        """
        _name("project", project)
        _name("to_bundle", to_bundle)
        _name("actor", actor)
        _text("reason", reason)
        checked_kind = _choice("kind", kind, KINDS)
        if expected_from is not ... and expected_from is not None:
            _name("expected_from", expected_from)
        attempts = 1 if expected_from is not ... else _UNCHECKED_ATTEMPTS
        for attempt in range(1, attempts + 1):
            try:
                return self._promote_once(
                    project, to_bundle, actor, reason, checked_kind, expected_from
                )
            except exc.IntegrityError as e:
                # Another writer inserted the same (project, seq) first: the CAS was lost.
                if attempt == attempts:
                    raise PromotionConflict(
                        f"{project}: another promotion was recorded concurrently; "
                        f"{to_bundle!r} was not promoted"
                    ) from e
            except exc.SQLAlchemyError as e:  # e.g. SQLite still locked after the busy timeout
                raise LedgerError(f"{project}: cannot record the promotion: {e}") from e
        raise AssertionError("unreachable")

    def _promote_once(
        self,
        project: str,
        to_bundle: str,
        actor: str,
        reason: str,
        kind: str,
        expected_from: str | EllipsisType | None,
    ) -> Promotion:
        with self._writer.begin() as conn:
            current = _newest(conn, project)
            current_bundle = current.to_bundle if current is not None else None
            if expected_from is not ... and expected_from != current_bundle:
                raise PromotionConflict(
                    f"{project}: production is {current_bundle!r}, not the expected "
                    f"{expected_from!r}; someone else promoted first"
                )
            if to_bundle == current_bundle:
                raise LedgerError(f"{project}: to_bundle {to_bundle!r} is already production")
            values = {
                "project": project,
                "seq": (current.seq if current is not None else 0) + 1,
                "from_bundle": current_bundle,
                "to_bundle": to_bundle,
                "actor": actor,
                "reason": reason,
                "kind": kind,
                "created_at": _now(),
            }
            new_id = conn.execute(sa.insert(promotions).values(**values)).inserted_primary_key
        assert new_id is not None
        return _promotion({"id": new_id[0], **values})

    def history(self, project: str) -> list[Promotion]:
        """All promotion rows of ``project``, oldest first."""
        with self._engine.connect() as conn:
            rows = (
                conn.execute(
                    sa.select(promotions)
                    .where(promotions.c.project == project)
                    .order_by(promotions.c.seq)
                )
                .mappings()
                .all()
            )
        return [_promotion(row) for row in rows]

    def projects(self) -> list[str]:
        """Every project with at least one decision or promotion, sorted."""
        query = sa.union(sa.select(decisions.c.project), sa.select(promotions.c.project)).subquery()
        with self._engine.connect() as conn:
            names = conn.execute(sa.select(query.c.project).order_by(query.c.project)).scalars()
            return list(names)

    def dispose(self) -> None:
        """Close every pooled connection (the ledger can still be used; it reconnects)."""
        self._engine.dispose()
