"""Read what docker/ declares (Dockerfiles, compose, instance config, Helm values) and run the
commands it names as local processes, so a test exercises exactly what a container would run.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mlplatform_tests import waiting

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
BIN = Path(sys.executable).parent
PLATFORM_DOCKERFILE = DOCKER / "Dockerfile"
SERVING_DOCKERFILE = DOCKER / "Dockerfile.serving"
COMPOSE = DOCKER / "docker-compose.yml"
DOCKER_INSTANCE = DOCKER / "dagster.docker.yaml"
HELM_VALUES = DOCKER / "helm" / "values.yaml"
TEAM_INSTANCE = ROOT / "mlplatform" / "deploy" / "dagster.yaml"
TEAM_WORKSPACE = ROOT / "mlplatform" / "deploy" / "workspace.yaml"


class StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping (YAML says keys are unique;
    PyYAML would silently keep the last one)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_yaml(path: Path) -> Any:
    return yaml.load(path.read_text(encoding="utf-8"), Loader=StrictLoader)


# -- Dockerfiles ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str
    stage: int  # index of the FROM it belongs to


def instructions(dockerfile: Path) -> list[Instruction]:
    """Instructions with continuation lines joined and comments dropped."""
    logical: list[str] = []
    pending = ""
    for raw in dockerfile.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    out, stage = [], -1
    for line in logical:
        keyword, _, args = line.partition(" ")
        if keyword.upper() == "FROM":
            stage += 1
        out.append(Instruction(keyword.upper(), args.strip(), stage))
    return out


def final_stage(dockerfile: Path) -> list[Instruction]:
    found = instructions(dockerfile)
    last = max(i.stage for i in found)
    return [i for i in found if i.stage == last]


def exec_form(args: str) -> list[str]:
    """CMD/ENTRYPOINT/HEALTHCHECK CMD in exec (JSON) form; shell form is refused."""
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), args
    return value


def cmd(dockerfile: Path) -> list[str]:
    (last,) = [i for i in final_stage(dockerfile) if i.keyword == "CMD"][-1:]
    return exec_form(last.args)


def env(dockerfile: Path) -> dict[str, str]:
    """ENV of the final stage (KEY=VALUE form)."""
    values: dict[str, str] = {}
    for ins in final_stage(dockerfile):
        if ins.keyword == "ENV":
            for item in shlex.split(ins.args):
                key, _, value = item.partition("=")
                values[key] = value
    return values


def arg_defaults(dockerfile: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    for ins in instructions(dockerfile):
        if ins.keyword == "ARG" and "=" in ins.args:
            key, _, value = ins.args.partition("=")
            values[key] = value
    return values


# -- compose --------------------------------------------------------------------------------


def compose() -> dict[str, Any]:
    return load_yaml(COMPOSE)


def service_command(name: str) -> list[str]:
    command = compose()["services"][name]["command"]
    assert isinstance(command, list), f"{name}: command must be a list (exec form)"
    return [str(c) for c in command]


def with_option(command: Sequence[str], option: str, value: str) -> list[str]:
    """``command`` with the value after ``option`` replaced (the option must be there)."""
    out = list(command)
    i = out.index(option)
    out[i + 1] = value
    return out


def local(command: Sequence[str]) -> list[str]:
    """The first word resolved to this virtualenv's console script of the same name."""
    exe = BIN / command[0]
    assert exe.is_file(), f"{command[0]} is not installed in {BIN}"
    return [str(exe), *command[1:]]


# -- processes ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Process:
    proc: subprocess.Popen[bytes]
    log: Path

    def tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""


@contextmanager
def running(
    command: Sequence[str], env: Mapping[str, str], log: Path, cwd: Path
) -> Iterator[Process]:
    """Start ``command`` in its own session; on exit SIGTERM the group (SIGKILL after 5 s)."""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            list(command),
            cwd=cwd,
            env=dict(env),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield Process(proc, log)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


def wait_until(what: str, ready: Callable[[], bool], seconds: float, *procs: Process) -> None:
    """Poll ``ready`` until true; fail with the processes' log tails on timeout or exit."""

    def check() -> bool:
        if ready():
            return True
        for p in procs:
            if p.proc.poll() is not None:
                raise AssertionError(
                    f"{p.log.name} exited ({p.proc.returncode}) while waiting for {what}:\n"
                    + p.tail()
                )
        return False

    waiting.wait_for(
        what,
        check,
        seconds,
        details=lambda: "\n".join(f"--- {p.log.name}:\n{p.tail()}" for p in procs),
    )


def base_env(**extra: str) -> dict[str, str]:
    """This environment without any MLPLATFORM_/DAGSTER_ settings, plus ``extra``."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("MLPLATFORM_", "DAGSTER_"))}
    return {**clean, **extra}


def sqlite_instance(dagster_home: Path) -> Path:
    """A DAGSTER_HOME with an SQLite instance whose runs start at once (no daemon needed)."""
    dagster_home.mkdir(parents=True, exist_ok=True)
    (dagster_home / "dagster.yaml").write_text(
        "telemetry:\n  enabled: false\n"
        "run_coordinator:\n"
        "  module: dagster._core.run_coordinator\n"
        "  class: DefaultRunCoordinator\n",
        encoding="utf-8",
    )
    return dagster_home
