"""The promotion ledger on a real, throwaway PostgreSQL cluster: CAS races, migrations, time zones.

Needs the PostgreSQL server binaries (Debian: ``apt-get install -y postgresql``); without them
the tests fail on purpose. Run as root, the cluster runs as the ``postgres`` user.
"""

from __future__ import annotations

import glob
import multiprocessing
import os
import pwd
import queue
import shutil
import socket
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from datetime import UTC
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from mlplatform.ledger import Ledger
from mlplatform.ledger.revisions import head_revision
from mlplatform_tests.unit.test_ledger import PROJECT, check_race, race_worker, schema_drift

INITDB = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
SERVER_TIMEZONE = "America/New_York"  # not UTC, so the ledger must normalise timestamps


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def postgres(tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """A fresh cluster with one empty database; returns its SQLAlchemy URL."""
    if not INITDB:
        pytest.fail(
            "PostgreSQL server binaries not found (/usr/lib/postgresql/*/bin/initdb); "
            "install them, e.g. `apt-get install -y postgresql`"
        )
    bindir = Path(INITDB[-1]).parent
    prefix: list[str] = []
    base = tmp_path
    if os.geteuid() == 0:  # postgres refuses to run as root: run it as the postgres user
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            pytest.fail("running as root, but there is no `postgres` user to run the cluster")
        base = Path(tempfile.mkdtemp(prefix="ledger-pg-"))  # tmp_path is private to root
        os.chown(base, owner.pw_uid, owner.pw_gid)
        request.addfinalizer(lambda: shutil.rmtree(base, ignore_errors=True))
        prefix = ["runuser", "-u", "postgres", "--"]

    data, log, port = base / "data", base / "postgres.log", free_port()

    def pg(tool: str, *args: str) -> None:
        result = subprocess.run(
            [*prefix, str(bindir / tool), *args], capture_output=True, text=True, timeout=120
        )
        if result.returncode != 0:
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            pytest.fail(f"{tool} failed:\n{result.stdout}\n{result.stderr}\n{tail}")

    pg("initdb", "-D", str(data), "-U", "ledger", "--auth=trust", "-E", "UTF8")
    options = (
        f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off "
        f"-c timezone={SERVER_TIMEZONE}"
    )
    pg("pg_ctl", "-D", str(data), "-l", str(log), "-o", options, "-w", "-t", "60", "start")
    request.addfinalizer(
        lambda: subprocess.run(
            [*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
            capture_output=True,
            timeout=120,
        )
    )
    pg("createdb", "-h", "127.0.0.1", "-p", str(port), "-U", "ledger", "ledger_test")
    return f"postgresql+psycopg2://ledger@127.0.0.1:{port}/ledger_test"


@pytest.fixture
def ledger(postgres: str) -> Iterator[Ledger]:
    book = Ledger(postgres)
    yield book
    book.dispose()


def test_round_trip_and_utc_on_postgres(ledger: Ledger, postgres: str) -> None:
    decision = ledger.record_decision(PROJECT, "b1", "approve", "ann", "ok")
    one = ledger.promote(PROJECT, "b1", "bob", "first", expected_from=None)
    two = ledger.promote(PROJECT, "b2", "bob", "second", expected_from="b1")
    back = ledger.promote(PROJECT, "b1", "carol", "drift", kind="rollback", expected_from="b2")
    assert ledger.decisions(PROJECT) == [decision]
    assert ledger.history(PROJECT) == [one, two, back]
    assert ledger.production(PROJECT) == back
    for row in [*ledger.history(PROJECT), *ledger.decisions(PROJECT)]:
        assert row.created_at.tzinfo == UTC
    engine = sa.create_engine(postgres)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SHOW timezone")).scalar() == SERVER_TIMEZONE
        version = conn.execute(sa.text("SELECT version_num FROM mlplatform_ledger_version"))
        assert version.scalars().all() == [head_revision()]
    engine.dispose()
    assert schema_drift(postgres) == []


def test_concurrent_first_opens_and_reopen_on_postgres(postgres: str) -> None:
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def open_it() -> None:
        barrier.wait(timeout=30)
        try:
            Ledger(postgres).dispose()
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=open_it) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []
    book = Ledger(postgres)
    row = book.promote(PROJECT, "b1", "bob", "first")
    book.dispose()
    again = Ledger(postgres)
    assert again.history(PROJECT) == [row]
    assert again.schema_revision() == head_revision()
    again.dispose()


def test_two_threads_race_one_wins_on_postgres(postgres: str) -> None:
    Ledger(postgres).dispose()
    rounds = 15
    barrier = threading.Barrier(2)
    results: queue.Queue[tuple[Any, ...]] = queue.Queue()
    threads = [
        threading.Thread(target=race_worker, args=(postgres, w, rounds, barrier, results))
        for w in (0, 1)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
        assert not t.is_alive()
    check_race(postgres, [results.get_nowait() for _ in range(results.qsize())], rounds)


def test_two_processes_race_one_wins_on_postgres(postgres: str) -> None:
    Ledger(postgres).dispose()
    rounds = 5
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(2)
    results = ctx.Queue()
    procs = [
        ctx.Process(target=race_worker, args=(postgres, w, rounds, barrier, results))
        for w in (0, 1)
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
    check_race(postgres, outcomes, rounds)
