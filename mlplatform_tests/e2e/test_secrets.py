"""Secrets are never printed: every command that `mlplatform --help` lists (and `serve`), run as
a real process with malformed and with well-formed-but-failing secret settings, never shows a
token or a password in what it prints; a malformed setting ends it with one line that names
the variable, without a traceback."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from mlplatform_tests import waiting

CLI = [sys.executable, "-m", "mlplatform.cli"]
EXAMPLES = Path(__file__).resolve().parents[2] / "mlplatform" / "examples"
LONG_RUNNING = {"serve", "ui", "stack up"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


CLOSED = free_port()  # nothing listens there: connections are refused


@dataclass
class Ran:
    args: tuple[str, ...]
    code: int | None  # None: still running when stopped
    output: str


def run(args: Sequence[str], env: dict[str, str], seconds: float = 60) -> Ran:
    """``mlplatform <args>`` as a real process; stopped (its whole group) after ``seconds``."""
    proc = subprocess.Popen(
        [*CLI, *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=seconds)
        return Ran(tuple(args), proc.returncode, out)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
        return Ran(tuple(args), None, out)


def listed(env: dict[str, str], *group: str) -> list[str]:
    """The command names a ``--help`` screen lists."""
    help_text = run([*group, "--help"], {**env, "COLUMNS": "200", "TERM": "dumb"}).output
    commands = help_text.split("Commands", 1)[1]
    return re.findall(r"^\W ([a-z][a-z-]*)\s{2,}", commands, flags=re.MULTILINE)


@pytest.fixture
def base(tmp_path: Path) -> dict[str, str]:
    """The environment of every run: no platform setting but a fresh home."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLPLATFORM_", "DAGSTER_"))}
    return {**env, "MLPLATFORM_HOME": str(tmp_path / "home"), "NO_COLOR": "1"}


def arguments(tmp_path: Path) -> dict[str, list[str]]:
    """Each command with arguments that reach its settings (and whatever it does next)."""
    return {
        "validate": [str(EXAMPLES / "churn.yaml"), "--data"],
        "generate": ["--months", "1", "--rows", "10"],
        "materialize": ["churn"],
        "demo": ["--months", "13", "--rows", "100"],
        "status": ["churn"],
        "candidates": ["churn"],
        "approve": ["churn", "0123abcd"],
        "reject": ["churn", "0123abcd", "-m", "no"],
        "promotions": ["churn"],
        "rollback": ["churn"],
        "shadow": ["churn", "0123abcd"],
        "serve": ["--port", str(free_port())],
        "pull": ["churn", "--url", f"http://127.0.0.1:{CLOSED}", "--cache", str(tmp_path / "c")],
        "predict": ["churn", str(tmp_path / "in.csv"), "-o", str(tmp_path / "out.parquet")],
        "ui": ["--port", str(free_port())],
        "stack up": ["--timeout", "20"],
        "stack down": [],
        "stack status": [],
        "stack env": [],
    }


def every_command(base: dict[str, str], tmp_path: Path) -> dict[str, list[str]]:
    args = arguments(tmp_path)
    commands = [c for c in listed(base) if c != "stack"]
    commands += [f"stack {c}" for c in listed(base, "stack")]
    assert sorted(commands) == sorted(args), "a command was added: give it arguments here"
    return args


def run_all(
    commands: dict[str, list[str]], env: dict[str, str], seconds: float = 60
) -> Iterator[tuple[str, Ran]]:
    def one(item: tuple[str, list[str]]) -> tuple[str, Ran]:
        name, args = item
        # a server that starts is stopped after a while: what it printed until then counts
        return name, run([*name.split(), *args], env, 20 if name in LONG_RUNNING else seconds)

    with ThreadPoolExecutor(max_workers=3) as pool:
        yield from pool.map(one, commands.items())


MALFORMED = {
    "approver token not a string (the probe's case)": (
        {"MLPLATFORM_APPROVER_TOKENS": '{"alice": ["atok-SECRET-5e1d"]}'},
        "MLPLATFORM_APPROVER_TOKENS",
    ),
    "reader tokens not valid JSON": (
        {"MLPLATFORM_READER_TOKENS": '{"rita": "rtok-SECRET-77a0"'},
        "MLPLATFORM_READER_TOKENS",
    ),
    "one good token, one bad, with a token and a ledger password": (
        {
            "MLPLATFORM_APPROVER_TOKENS": '{"alice": "atok-SECRET-0c44", "bob": 42}',
            "MLPLATFORM_TOKEN": "mytok-SECRET-9b1f",
            "MLPLATFORM_LEDGER_URL": "postgresql://mlplatform:pw-SECRET-d4c2@127.0.0.1:1/x",
        },
        "MLPLATFORM_APPROVER_TOKENS",
    ),
}


def secrets_in(variables: dict[str, str]) -> list[str]:
    return re.findall(r"[a-z]+-SECRET-[0-9a-f]{4}", " ".join(variables.values()))


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_a_malformed_secret_setting_is_named_in_one_line_never_shown(
    case: str, base: dict[str, str], tmp_path: Path
) -> None:
    variables, name = MALFORMED[case]
    secrets = secrets_in(variables)
    assert secrets
    results = dict(run_all(every_command(base, tmp_path), {**base, **variables}))
    for command, ran in results.items():
        for secret in secrets:
            assert secret not in ran.output, f"{command} printed {secret}:\n{ran.output}"
        assert "Traceback" not in ran.output, f"{command}:\n{ran.output}"
        if command == "pull":  # reads no platform setting: it only needs a URL and a token
            continue
        lines = ran.output.strip().splitlines()
        before = 1 if command == "validate" else 0  # "<spec>: ok" comes before --data's check
        assert ran.code == 1 and len(lines) == before + 1, f"{command}:\n{ran.output}"
        assert lines[-1].startswith("mlplatform: configuration error: ")
        assert name in lines[-1] and "(values are not shown)" in lines[-1]
    verbose = run(["-v", "candidates", "churn"], {**base, **variables})
    assert verbose.code == 1 and name in verbose.output
    assert not any(secret in verbose.output for secret in secrets), verbose.output


FAILING = {
    "the ledger's database refuses connections": {
        "MLPLATFORM_LEDGER_URL": f"postgresql+psycopg2://mlplatform:pw-SECRET-1a2b@127.0.0.1:{CLOSED}/x",
        "MLPLATFORM_SEARCH_URL": f"postgresql+psycopg2://mlplatform:pw-SECRET-1a2b@127.0.0.1:{CLOSED}/x",
        "MLPLATFORM_MLFLOW_TRACKING_URI": f"http://ml:pw-SECRET-3c4d@127.0.0.1:{CLOSED}",
    },
    "a ledger URL too malformed to parse": {
        "MLPLATFORM_LEDGER_URL": "postgres ql://mlplatform:pw-SECRET-5e6f@localhost/x",
    },
    "the serving API refuses connections": {
        "MLPLATFORM_SERVE_URL": f"http://127.0.0.1:{CLOSED}",
        "MLPLATFORM_TOKEN": "mytok-SECRET-7a8b",
        "MLPLATFORM_APPROVER_TOKENS": '{"alice": "atok-SECRET-9c0d"}',
    },
}
# What a failing secret setting is used by (the others would only build or start services).
USES_SECRETS = (
    "candidates",
    "approve",
    "reject",
    "promotions",
    "rollback",
    "shadow",
    "materialize",
    "status",
    "serve",
    "pull",
    "stack status",
    "stack env",
)


@pytest.mark.parametrize("case", sorted(FAILING))
def test_a_failing_secret_setting_is_never_shown(
    case: str, base: dict[str, str], tmp_path: Path
) -> None:
    variables = FAILING[case]
    secrets = secrets_in(variables)
    assert secrets
    args = every_command(base, tmp_path)
    env = {**base, **variables, "MLPLATFORM_PROJECTS_DIR": str(EXAMPLES)}
    for command, ran in run_all({c: args[c] for c in USES_SECRETS}, env, seconds=90):
        for secret in secrets:
            assert secret not in ran.output, f"{command} printed {secret}:\n{ran.output}"
        assert "Traceback" not in ran.output, f"{command}:\n{ran.output}"


def test_a_wrong_token_is_not_echoed_by_the_server_or_the_cli(
    base: dict[str, str], tmp_path: Path
) -> None:
    server_secrets = {
        "MLPLATFORM_APPROVER_TOKENS": '{"alice": "atok-SECRET-a1b2"}',
        "MLPLATFORM_READER_TOKENS": '{"rita": "rtok-SECRET-c3d4"}',
    }
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    serve = subprocess.Popen(
        [*CLI, "serve", "--port", str(port)],
        env={**base, **server_secrets},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )

    def healthy() -> bool:
        try:
            return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return serve.poll() is not None  # exited: the assertions below say why

    try:
        waiting.wait_for("mlplatform serve to answer", healthy, 60)
        wrong = {"MLPLATFORM_SERVE_URL": url, "MLPLATFORM_TOKEN": "mytok-SECRET-e5f6"}
        env = {**base, **wrong}
        ran = [
            run(args, env)
            for args in (
                ["approve", "churn", "0123abcd"],
                ["rollback", "churn"],
                ["pull", "churn", "--cache", str(tmp_path / "cache")],
            )
        ]  # a refusal is logged while its request is handled: before its answer arrives
    finally:
        os.killpg(serve.pid, signal.SIGTERM)
        server_output, _ = serve.communicate(timeout=30)
    assert "serving on" in server_output, server_output
    for r in ran:
        assert r.code == 1 and "HTTP 401" in r.output, r.output
    everything = server_output + "".join(r.output for r in ran)
    for secret in secrets_in({**server_secrets, **wrong}):
        assert secret not in everything, everything
