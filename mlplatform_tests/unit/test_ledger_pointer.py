"""The production pointer read for ``mlplatform predict``: the same answer as the ledger,
read from the SQLite file without SQLAlchemy, and the ledger's own way whenever it must."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlplatform.ledger import Ledger, LedgerError
from mlplatform.ledger.names import VERSION_TABLE
from mlplatform.ledger.pointer import production_bundle, sqlite_file

pytestmark = pytest.mark.unit
PROJECT = "churn"


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'ledger.db'}"


@pytest.fixture
def ledger(url: str) -> Iterator[Ledger]:
    with Ledger(url) as book:
        yield book


def expected(ledger: Ledger, project: str) -> str | None:
    row = ledger.production(project)
    return None if row is None else row.to_bundle


def test_the_pointer_follows_promotions_and_rollbacks(ledger: Ledger, url: str) -> None:
    assert production_bundle(url, PROJECT) is None
    ledger.promote(PROJECT, "b1", "bob", "first")
    ledger.promote("other", "x1", "bob", "unrelated")
    assert production_bundle(url, PROJECT) == expected(ledger, PROJECT) == "b1"
    ledger.promote(PROJECT, "b2", "ann", "better")
    ledger.promote(PROJECT, "b1", "ann", "b2 misbehaves", kind="rollback")
    assert production_bundle(url, PROJECT) == expected(ledger, PROJECT) == "b1"
    assert production_bundle(url, "other") == "x1"
    assert production_bundle(url, "nobody") is None
    assert production_bundle(url, "churn' OR '1'='1") is None


def test_the_pointer_reads_sqlite_without_sqlalchemy(ledger: Ledger, url: str) -> None:
    ledger.promote(PROJECT, "b7", "bob", "first")
    probe = (
        "import sys\n"
        "from mlplatform.ledger.pointer import production_bundle\n"
        f"print(production_bundle({url!r}, {PROJECT!r}), 'sqlalchemy' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["b7", "False"]


def test_a_file_without_the_schema_goes_through_the_ledger(tmp_path: Path) -> None:
    path = tmp_path / "empty.db"
    sqlite3.connect(path).close()  # a database file with no table yet
    assert production_bundle(f"sqlite:///{path}", PROJECT) is None
    with Ledger(f"sqlite:///{path}") as book:  # the ledger created its schema on the way
        assert book.schema_revision() is not None


def test_an_unknown_revision_is_not_read_around(ledger: Ledger, url: str) -> None:
    ledger.promote(PROJECT, "b1", "bob", "first")
    path = sqlite_file(url)
    assert path is not None
    with sqlite3.connect(path) as conn:
        conn.execute(f"UPDATE {VERSION_TABLE} SET version_num = 'from-the-future'")
    with pytest.raises(LedgerError, match="'from-the-future', which this version of mlplatform"):
        production_bundle(url, PROJECT)


@pytest.mark.parametrize(
    ("url", "found"),
    [
        ("sqlite:////srv/home/ledger.db", "/srv/home/ledger.db"),
        ("sqlite:///relative/ledger.db", "relative/ledger.db"),
        ("sqlite://", None),
        ("sqlite:///:memory:", None),
        ("sqlite:///file:ledger.db?mode=ro&uri=true", None),
        ("sqlite:////srv/led%20ger.db", None),
        ("postgresql+psycopg://user:secret@db/ledger", None),
    ],
)
def test_which_urls_are_read_directly(url: str, found: str | None) -> None:
    path = sqlite_file(url)
    assert (str(path) if path is not None else None) == found
