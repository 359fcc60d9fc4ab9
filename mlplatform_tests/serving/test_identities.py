"""Approvals, rejections and rollbacks are recorded under an authenticated identity: the owner
of ``MLPLATFORM_TOKEN`` when the CLI acts through the serving API, else the system account of
the process (by uid; ``$USER`` is not believed); never a name typed with ``--as``."""

from __future__ import annotations

import os
import pwd
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlplatform.serving.app import create_app
from mlplatform_tests.serving.builders import PROJECT, Built
from mlplatform_tests.serving.servers import (
    APPROVER_TOKEN,
    POLL,
    READER_TOKEN,
    TOKENS,
    Env,
    make_env,
    uvicorn_thread,
)

pytestmark = pytest.mark.e2e  # real CLI processes
SYSTEM_ACCOUNT = pwd.getpwuid(os.getuid()).pw_name
SPOOFED = {"USER": "mallory", "LOGNAME": "mallory", "USERNAME": "mallory"}


def cli(env: Env, *args: str, **environ: str) -> subprocess.CompletedProcess[str]:
    """``mlplatform <args>`` as a real process on the env's home, with ``$USER`` spoofed."""
    settings = env.settings
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MLPLATFORM_")}
    return subprocess.run(
        [sys.executable, "-m", "mlplatform.cli", *args],
        env={
            **clean,
            **SPOOFED,
            "MLPLATFORM_HOME": str(settings.home),
            "MLPLATFORM_PROJECTS_DIR": str(settings.projects_dir),
            **environ,
        },
        capture_output=True,
        text=True,
        timeout=180,
    )


@pytest.fixture
def local(built: Built, tmp_path: Path) -> Iterator[Env]:
    env = make_env(built, tmp_path)
    yield env
    env.ledger.dispose()


@pytest.fixture
def served(built: Built, tmp_path: Path) -> Iterator[tuple[Env, str]]:
    """A real server whose approver token belongs to ``alice`` (and reader ``rita``)."""
    env = make_env(built, tmp_path, **TOKENS)
    try:
        with uvicorn_thread(create_app(env.settings, poll_seconds=POLL)) as url:
            yield env, url
    finally:
        env.ledger.dispose()


def test_a_name_typed_with_as_is_refused_and_nothing_is_recorded(local: Env) -> None:
    b = local.ids["b"]
    for args in (
        ("approve", PROJECT, b[:12], "--as", "alice"),
        ("reject", PROJECT, b[:12], "--as", "alice"),
        ("rollback", PROJECT, "--as", "alice"),
    ):
        result = cli(local, *args)
        assert result.returncode == 1, result.stdout
        assert "--as is no longer accepted" in result.stderr
        assert "Traceback" not in result.stderr
    assert local.ledger.decisions(PROJECT) == []
    assert len(local.ledger.history(PROJECT)) == 1


def test_direct_ledger_access_records_the_system_account_not_user(local: Env) -> None:
    a, b, c = (local.ids[k] for k in "abc")
    approved = cli(local, "approve", PROJECT, b[:12], "-m", "looks right")
    assert approved.returncode == 0, approved.stderr
    assert approved.stdout.startswith(f"{SYSTEM_ACCOUNT} approved {PROJECT} bundle {b[:12]}")
    rejected = cli(local, "reject", PROJECT, c[:12])
    assert rejected.returncode == 0, rejected.stderr
    assert [(d.bundle_id, d.decision, d.actor) for d in local.ledger.decisions(PROJECT)] == [
        (b, "approve", SYSTEM_ACCOUNT),
        (c, "reject", SYSTEM_ACCOUNT),
    ]
    local.ledger.promote(PROJECT, b, "ci", "second production", expected_from=a)
    rolled = cli(local, "rollback", PROJECT, "-m", "drifted")
    assert rolled.returncode == 0, rolled.stderr
    last = local.ledger.history(PROJECT)[-1]
    assert (last.kind, last.to_bundle, last.actor) == ("rollback", a, SYSTEM_ACCOUNT)
    assert "mallory" not in approved.stdout + rolled.stdout


def test_through_the_api_the_token_owner_is_recorded(served: tuple[Env, str]) -> None:
    env, url = served
    a, b, c = (env.ids[k] for k in "abc")
    api = {"MLPLATFORM_SERVE_URL": url, "MLPLATFORM_TOKEN": APPROVER_TOKEN}
    approved = cli(env, "approve", PROJECT, b[:12], "-m", "via the API", **api)
    assert approved.returncode == 0, approved.stderr
    assert approved.stdout.startswith(f"alice approved {PROJECT} bundle {b[:12]} (via API)")
    rejected = cli(env, "reject", PROJECT, c[:12], **api)
    assert rejected.returncode == 0, rejected.stderr
    assert [
        (d.bundle_id, d.decision, d.actor, d.comment) for d in env.ledger.decisions(PROJECT)
    ] == [
        (b, "approve", "alice", "via the API"),
        (c, "reject", "alice", ""),
    ]
    env.ledger.promote(PROJECT, b, "ci", "second production", expected_from=a)
    rolled = cli(env, "rollback", PROJECT, "--to", a[:12], "-m", "drifted", **api)
    assert rolled.returncode == 0, rolled.stderr
    last = env.ledger.history(PROJECT)[-1]
    assert (last.kind, last.to_bundle, last.actor, last.reason) == (
        "rollback",
        a,
        "alice",
        "drifted",
    )
    assert APPROVER_TOKEN not in approved.stdout + approved.stderr + rolled.stdout + rolled.stderr


def test_a_reader_token_cannot_decide_and_half_a_credential_is_refused(
    served: tuple[Env, str],
) -> None:
    env, url = served
    b = env.ids["b"]
    as_reader = cli(
        env, "approve", PROJECT, b[:12], MLPLATFORM_SERVE_URL=url, MLPLATFORM_TOKEN=READER_TOKEN
    )
    assert as_reader.returncode == 1
    assert "HTTP 403" in as_reader.stderr and "approver token" in as_reader.stderr
    assert READER_TOKEN not in as_reader.stdout + as_reader.stderr
    token_only = cli(env, "approve", PROJECT, b[:12], MLPLATFORM_TOKEN=APPROVER_TOKEN)
    assert token_only.returncode == 1
    assert "MLPLATFORM_SERVE_URL is not" in token_only.stderr
    url_only = cli(env, "rollback", PROJECT, MLPLATFORM_SERVE_URL=url)
    assert url_only.returncode == 1
    assert "MLPLATFORM_TOKEN is not" in url_only.stderr
    assert env.ledger.decisions(PROJECT) == [] and len(env.ledger.history(PROJECT)) == 1
