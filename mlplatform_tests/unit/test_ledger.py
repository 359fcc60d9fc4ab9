"""The promotion ledger: decisions, the append-only production pointer, CAS races, migrations."""

from __future__ import annotations

import multiprocessing
import queue
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

import mlplatform.ledger.store as store
from mlplatform.ledger import Decision, Ledger, LedgerError, Promotion, PromotionConflict
from mlplatform.ledger.names import HEAD_REVISION, VERSION_TABLE
from mlplatform.ledger.revisions import head_revision
from mlplatform.ledger.schema import metadata, own_objects

PROJECT = "churn"
LEDGER_DIR = Path(store.__file__).parent


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


@pytest.fixture
def url(tmp_path: Path) -> str:
    return sqlite_url(tmp_path / "ledger.db")


@pytest.fixture
def ledger(url: str) -> Iterator[Ledger]:
    book = Ledger(url)
    yield book
    book.dispose()


def assert_utc(moment: datetime) -> None:
    assert moment.tzinfo is not None and moment.utcoffset() == timedelta(0)
    assert abs(datetime.now(UTC) - moment) < timedelta(minutes=5)


# -- decisions ---------------------------------------------------------------------------------


def test_decisions_round_trip_in_order(ledger: Ledger) -> None:
    first = ledger.record_decision(PROJECT, "b1", "reject", "bob", "worse on the new slice")
    second = ledger.record_decision(PROJECT, "b2", "approve", "ann")
    third = ledger.record_decision(PROJECT, "b1", "approve", "carol", "fixed upstream")
    ledger.record_decision("other", "b1", "approve", "bob")

    assert isinstance(first, Decision)
    assert (first.decision, first.actor, first.comment) == (
        "reject",
        "bob",
        "worse on the new slice",
    )
    assert second.comment == ""
    assert ledger.decisions(PROJECT) == [first, second, third]  # equal after the round trip
    assert ledger.decisions(PROJECT, "b1") == [first, third]
    assert ledger.decisions(PROJECT, "b3") == []
    assert ledger.decisions("nobody") == []
    assert first.id < second.id < third.id
    for d in ledger.decisions(PROJECT):
        assert_utc(d.created_at)


def test_projects_lists_every_project_once(ledger: Ledger) -> None:
    assert ledger.projects() == []
    ledger.record_decision("zeta", "b1", "approve", "bob")
    ledger.promote("alpha", "b1", "bob", "first")
    ledger.record_decision("alpha", "b1", "approve", "bob")
    assert ledger.projects() == ["alpha", "zeta"]


# -- promotions --------------------------------------------------------------------------------


def test_production_is_the_newest_promotion(ledger: Ledger) -> None:
    assert ledger.production(PROJECT) is None
    one = ledger.promote(PROJECT, "b1", "bob", "first model", expected_from=None)
    assert ledger.production(PROJECT) == one
    two = ledger.promote(PROJECT, "b2", "ann", "better auc", expected_from="b1")
    assert isinstance(two, Promotion)
    assert ledger.production(PROJECT) == two
    assert ledger.production("other") is None
    assert_utc(two.created_at)
    assert two.created_at >= one.created_at


def test_history_is_an_append_only_chain(ledger: Ledger) -> None:
    rows = [ledger.promote(PROJECT, f"b{i}", "bob", f"step {i}") for i in range(1, 5)]
    ledger.promote("other", "x1", "bob", "unrelated")
    history = ledger.history(PROJECT)
    assert history == rows
    assert [r.seq for r in history] == [1, 2, 3, 4]
    assert [r.from_bundle for r in history] == [None, "b1", "b2", "b3"]
    assert [r.to_bundle for r in history] == ["b1", "b2", "b3", "b4"]
    assert all(r.kind == "promote" for r in history)
    assert len({r.id for r in history}) == 4
    mutators = [
        name
        for name in dir(Ledger)
        if name.startswith(("update", "delete", "remove", "set", "edit", "drop", "clear"))
    ]
    assert mutators == []


def test_rollback_is_a_new_row(ledger: Ledger) -> None:
    ledger.promote(PROJECT, "b1", "bob", "first")
    ledger.promote(PROJECT, "b2", "bob", "second")
    before = ledger.history(PROJECT)
    back = ledger.promote(PROJECT, "b1", "carol", "b2 drifts", kind="rollback", expected_from="b2")
    assert (back.kind, back.from_bundle, back.to_bundle, back.seq) == ("rollback", "b2", "b1", 3)
    assert ledger.history(PROJECT) == [*before, back]  # earlier rows untouched
    assert ledger.production(PROJECT) == back


def test_stale_expected_from_conflicts_and_writes_nothing(ledger: Ledger) -> None:
    with pytest.raises(PromotionConflict, match="'b0'"):
        ledger.promote(PROJECT, "b1", "bob", "first", expected_from="b0")  # nothing yet
    ledger.promote(PROJECT, "b1", "bob", "first", expected_from=None)
    ledger.promote(PROJECT, "b2", "bob", "second", expected_from="b1")
    before = ledger.history(PROJECT)
    with pytest.raises(PromotionConflict, match="production is 'b2'"):
        ledger.promote(PROJECT, "b3", "ann", "stale view", expected_from="b1")
    with pytest.raises(PromotionConflict):
        ledger.promote(PROJECT, "b3", "ann", "thinks nothing is live", expected_from=None)
    with pytest.raises(PromotionConflict):
        ledger.promote(PROJECT, "b1", "ann", "stale", kind="rollback", expected_from="b3")
    assert ledger.history(PROJECT) == before
    assert issubclass(PromotionConflict, LedgerError)


def test_promote_without_expected_from_moves_from_current(ledger: Ledger) -> None:
    ledger.promote(PROJECT, "b1", "bob", "first")
    row = ledger.promote(PROJECT, "b2", "bob", "no check")
    assert (row.from_bundle, row.to_bundle, row.seq) == ("b1", "b2", 2)


def test_timestamps_are_utc_aware_and_exact(ledger: Ledger) -> None:
    row = ledger.promote(PROJECT, "b1", "bob", "first")
    decision = ledger.record_decision(PROJECT, "b1", "approve", "ann")
    stored_row, stored_decision = ledger.history(PROJECT)[0], ledger.decisions(PROJECT)[0]
    for moment in (row.created_at, decision.created_at):
        assert_utc(moment)
    assert stored_row.created_at == row.created_at
    assert stored_row.created_at.tzinfo == UTC
    assert stored_decision.created_at == decision.created_at
    assert stored_decision.created_at.tzinfo == UTC


# -- invalid input -----------------------------------------------------------------------------

GOOD_DECISION = {"project": PROJECT, "bundle_id": "b1", "decision": "approve", "actor": "ann"}
GOOD_PROMOTION = {"project": PROJECT, "to_bundle": "b1", "actor": "ann", "reason": "why"}


@pytest.mark.parametrize(
    ("method", "overrides", "field"),
    [
        ("record_decision", {"project": ""}, "project"),
        ("record_decision", {"bundle_id": ""}, "bundle_id"),
        ("record_decision", {"bundle_id": "x" * 300}, "bundle_id"),
        ("record_decision", {"decision": "maybe"}, "decision"),
        ("record_decision", {"decision": "Approve"}, "decision"),
        ("record_decision", {"actor": ""}, "actor"),
        ("record_decision", {"actor": "   "}, "actor"),
        ("record_decision", {"comment": None}, "comment"),
        ("promote", {"project": " "}, "project"),
        ("promote", {"to_bundle": ""}, "to_bundle"),
        ("promote", {"to_bundle": None}, "to_bundle"),
        ("promote", {"actor": ""}, "actor"),
        ("promote", {"kind": "deploy"}, "kind"),
        ("promote", {"reason": None}, "reason"),
        ("promote", {"expected_from": ""}, "expected_from"),
    ],
)
def test_invalid_input_names_the_field(
    ledger: Ledger, method: str, overrides: dict[str, Any], field: str
) -> None:
    good = GOOD_DECISION if method == "record_decision" else GOOD_PROMOTION
    with pytest.raises(LedgerError, match=field) as caught:
        getattr(ledger, method)(**{**good, **overrides})
    assert not isinstance(caught.value, PromotionConflict)
    assert ledger.decisions(PROJECT) == [] and ledger.history(PROJECT) == []


@pytest.mark.parametrize("kind", ["promote", "rollback"])
def test_promoting_the_current_production_is_refused(ledger: Ledger, kind: str) -> None:
    ledger.promote(PROJECT, "b1", "bob", "first")
    for expected in ("b1", ...):
        with pytest.raises(LedgerError, match="to_bundle 'b1' is already production") as caught:
            ledger.promote(PROJECT, "b1", "ann", "again", kind=kind, expected_from=expected)
        assert not isinstance(caught.value, PromotionConflict)
    assert len(ledger.history(PROJECT)) == 1


def test_bad_url_is_a_ledger_error() -> None:
    with pytest.raises(LedgerError, match="invalid ledger URL"):
        Ledger("not a url")


# -- races -------------------------------------------------------------------------------------


def race_worker(url: str, worker: int, rounds: int, barrier: Any, results: Any) -> None:
    """Each round: both workers read the same pointer, then both promote against it."""
    book = Ledger(url)
    try:
        for r in range(rounds):
            barrier.wait(timeout=60)
            current = book.production(PROJECT)
            expected = current.to_bundle if current is not None else None
            barrier.wait(timeout=60)  # nobody promotes before both have read
            try:
                row = book.promote(
                    PROJECT, f"r{r}-w{worker}", f"actor{worker}", "race", expected_from=expected
                )
                results.put((r, worker, "won", row.to_bundle, expected))
            except PromotionConflict as e:
                results.put((r, worker, "conflict", str(e), expected))
            except Exception as e:
                results.put((r, worker, "error", repr(e), expected))
    finally:
        book.dispose()


def check_race(url: str, outcomes: list[tuple[Any, ...]], rounds: int) -> None:
    errors = [o for o in outcomes if o[2] == "error"]
    assert errors == []
    assert len(outcomes) == 2 * rounds, outcomes
    winners: list[str] = []
    for r in range(rounds):
        mine = sorted((o for o in outcomes if o[0] == r), key=lambda o: o[2])
        assert [o[2] for o in mine] == ["conflict", "won"], mine
        assert mine[0][4] == mine[1][4]  # both promoted against the same pointer
        winners.append(mine[1][3])
    book = Ledger(url)
    try:
        history = book.history(PROJECT)
    finally:
        book.dispose()
    assert [row.to_bundle for row in history] == winners  # exactly one new row per round
    assert [row.seq for row in history] == list(range(1, rounds + 1))
    assert [row.from_bundle for row in history] == [None, *winners[:-1]]


def test_two_threads_race_one_wins(url: str) -> None:
    Ledger(url).dispose()
    rounds = 15
    barrier = threading.Barrier(2)
    results: queue.Queue[tuple[Any, ...]] = queue.Queue()
    threads = [
        threading.Thread(target=race_worker, args=(url, w, rounds, barrier, results))
        for w in (0, 1)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
        assert not t.is_alive()
    check_race(url, [results.get_nowait() for _ in range(results.qsize())], rounds)


@pytest.mark.e2e  # two real processes race
def test_two_processes_race_one_wins(url: str) -> None:
    Ledger(url).dispose()
    rounds = 5
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(2)
    results = ctx.Queue()
    procs = [
        ctx.Process(target=race_worker, args=(url, w, rounds, barrier, results)) for w in (0, 1)
    ]
    for p in procs:
        p.start()
    outcomes = []
    try:
        for _ in range(2 * rounds):
            outcomes.append(results.get(timeout=120))
    finally:
        for p in procs:
            p.join(timeout=60)
            if p.is_alive():
                p.kill()
    assert [p.exitcode for p in procs] == [0, 0]
    check_race(url, outcomes, rounds)


def test_concurrent_first_opens_migrate_once(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "fresh" / "ledger.db")  # folder is created too
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def open_it() -> None:
        barrier.wait(timeout=30)
        try:
            Ledger(url).dispose()
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=open_it) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    book = Ledger(url)
    assert book.schema_revision() == head_revision()
    book.dispose()


# -- migrations --------------------------------------------------------------------------------


def test_reopen_keeps_rows_and_does_not_migrate_again(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    book = Ledger(url)
    decision = book.record_decision(PROJECT, "b1", "approve", "ann", "ok")
    rows = [book.promote(PROJECT, "b1", "bob", "first"), book.promote(PROJECT, "b2", "bob", "2")]
    book.dispose()

    def no_upgrade(*args: object, **kwargs: object) -> None:
        raise AssertionError("upgrade ran on a database already at head")

    import alembic.command

    monkeypatch.setattr(alembic.command, "upgrade", no_upgrade)
    again = Ledger(url)
    assert again.decisions(PROJECT) == [decision]
    assert again.history(PROJECT) == rows
    assert again.production(PROJECT) == rows[-1]
    assert again.promote(PROJECT, "b3", "bob", "3", expected_from="b2").seq == 3
    again.dispose()

    engine = sa.create_engine(url)
    with engine.connect() as conn:
        tables = set(sa.inspect(conn).get_table_names())
        versions = conn.execute(sa.text("SELECT version_num FROM mlplatform_ledger_version"))
        assert versions.scalars().all() == [head_revision()]
    engine.dispose()
    assert {"ledger_decisions", "ledger_promotions", "mlplatform_ledger_version"} <= tables
    assert "alembic_version" not in tables


def test_shares_a_database_with_another_alembic_user(url: str) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:  # what MLflow leaves behind: its own alembic_version
        conn.execute(sa.text("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)"))
        conn.execute(sa.text("INSERT INTO alembic_version VALUES ('mlflow123')"))
    Ledger(url).dispose()
    Ledger(url).dispose()
    with engine.connect() as conn:
        theirs = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalars().all()
        ours = conn.execute(sa.text("SELECT version_num FROM mlplatform_ledger_version"))
        assert theirs == ["mlflow123"]
        assert ours.scalars().all() == [head_revision()]
    engine.dispose()


def test_schema_has_the_indexes_and_unique_seq(ledger: Ledger, url: str) -> None:
    ledger.promote(PROJECT, "b1", "bob", "first")
    engine = sa.create_engine(url)
    inspector = sa.inspect(engine)
    index_columns = [i["column_names"] for i in inspector.get_indexes("ledger_decisions")]
    assert ["project", "bundle_id"] in index_columns
    unique = [u["column_names"] for u in inspector.get_unique_constraints("ledger_promotions")]
    assert ["project", "seq"] in unique
    row = {
        "project": PROJECT,
        "seq": 1,
        "to_bundle": "b9",
        "actor": "x",
        "reason": "",
        "kind": "promote",
        "created_at": datetime.now(UTC),
    }
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
        conn.execute(store.promotions.insert().values(**row))
    engine.dispose()


def schema_drift(url: str) -> list[Any]:
    """Differences between schema.py's tables and what the migrations built (autogenerate)."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn,
                opts={
                    "version_table": VERSION_TABLE,
                    "compare_type": True,
                    "include_object": own_objects,
                },
            )
            return list(compare_metadata(context, metadata))
    finally:
        engine.dispose()


def test_schema_module_matches_the_migrations(ledger: Ledger, url: str) -> None:
    assert schema_drift(url) == []


def test_other_tables_in_the_database_are_not_the_ledgers(ledger: Ledger, url: str) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:  # e.g. Optuna's studies share the database in production
        conn.execute(sa.text("CREATE TABLE studies (study_id INTEGER PRIMARY KEY)"))
    engine.dispose()
    assert schema_drift(url) == []
    Ledger(url)  # migrating again leaves foreign tables alone
    with sa.create_engine(url).connect() as conn:
        assert sa.inspect(conn).has_table("studies")


def test_migrations_ship_as_packages() -> None:
    migrations = LEDGER_DIR / "migrations"
    assert (migrations / "env.py").is_file()
    assert (migrations / "versions" / "0001_initial.py").is_file()
    for folder in (LEDGER_DIR, migrations, migrations / "versions"):
        assert (folder / "__init__.py").is_file(), f"{folder} is not a package"
    assert head_revision() == "0001"
    assert head_revision() == HEAD_REVISION, "schema.HEAD_REVISION must name the newest migration"


def test_opening_a_migrated_ledger_imports_no_alembic(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    Ledger(url).dispose()  # creates and migrates
    probe = (
        "import sys\n"
        "from mlplatform.ledger import Ledger\n"
        f"book = Ledger({url!r})\n"
        "assert book.schema_revision() == " + repr(HEAD_REVISION) + "\n"
        "print('alembic' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_in_memory_ledger_works() -> None:
    book = Ledger("sqlite://")
    book.promote(PROJECT, "b1", "bob", "first")
    assert book.production(PROJECT) is not None
    assert book.schema_revision() == head_revision()
    book.dispose()
