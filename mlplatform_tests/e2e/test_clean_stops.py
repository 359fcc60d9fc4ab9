"""Clean stops and one instance, with real processes.

- One SIGTERM stops ``mlplatform ui`` (webserver, daemon, code server, run worker) within
  10 s; the run in flight ends CANCELED or FAILURE, never left STARTED.
- A run left STARTED by a SIGKILLed process is marked failed when ``mlplatform ui`` starts.
- One SIGINT (or SIGTERM) stops ``mlplatform materialize`` within 10 s: the run in progress
  ends FAILURE, later partitions do not run, the exit code is 128 + the signal.
- ``dagster asset materialize -m mlplatform.definitions`` outside the platform's instance
  refuses with one line and writes nothing into the home.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from mlplatform.examples.generate import generate_example
from mlplatform.settings import instance_problem, load_settings
from mlplatform.spec import load_spec
from mlplatform.stack import processes
from mlplatform_tests.docker import files
from mlplatform_tests.projects import ProjectFactory, variant
from mlplatform_tests.waiting import wait_for

pytestmark = pytest.mark.e2e

BIN = Path(sys.executable).parent
STOP_SECONDS = 10.0
IN_FLIGHT = ("STARTING", "STARTED", "CANCELING")


@dataclass
class Proc:
    """A command in a session of its own, its output collected line by line."""

    proc: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)

    @classmethod
    def start(cls, argv: list[str], env: dict[str, str], cwd: Path) -> Proc:
        proc = subprocess.Popen(
            argv,
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        started = cls(proc)
        threading.Thread(target=started._read, daemon=True).start()
        return started

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def text(self) -> str:
        return "\n".join(self.lines)

    def tail(self) -> str:
        return "\n".join(self.lines[-40:])

    def wait_line(self, part: str, seconds: float) -> str:
        def found() -> str | None:
            hit = next((line for line in self.lines if part in line), None)
            if hit is None and self.proc.poll() is not None:
                raise AssertionError(
                    f"exited ({self.proc.returncode}) before {part!r}:\n{self.tail()}"
                )
            return hit

        return wait_for(f"{part!r} in the output", found, seconds, details=self.tail)

    def tree(self) -> dict[int, int]:
        """This process and every descendant, with their start ticks."""
        found = processes.descendants(self.proc.pid)
        ticks = processes.start_ticks(self.proc.pid)
        if ticks is not None:
            found[self.proc.pid] = ticks
        return found


def alive(tree: dict[int, int]) -> list[int]:
    return [pid for pid, ticks in tree.items() if processes.alive(pid, ticks)]


def working_in(folder: Path) -> list[int]:
    """Live processes whose working directory is in ``folder`` (the services of `mlplatform ui`
    run in its DAGSTER_HOME, and so do their children)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and entry.name != str(os.getpid()):
            try:
                cwd = Path(os.readlink(entry / "cwd"))
            except OSError:
                continue
            if (cwd == folder or folder in cwd.parents) and processes.alive(int(entry.name)):
                found.append(int(entry.name))
    return found


def kill_all(tree: dict[int, int]) -> None:
    for pid in alive(tree):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture
def big_project(tmp_path: Path) -> Callable[[str], tuple[Path, Path, str]]:
    """A project (automation off) with one 100k-row partition: its raw step takes seconds."""

    def make(name: str) -> tuple[Path, Path, str]:
        projects, home = tmp_path / "projects", tmp_path / "home"
        projects.mkdir(exist_ok=True)
        data = variant("binary", name)
        data["automation"] = {"enabled": False}  # our run is the only one
        (projects / f"{name}.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
        spec = load_spec(projects / f"{name}.yaml")
        (big,) = generate_example(
            spec.landing_dir(home),
            start=datetime.date(2023, 9, 1),
            months=1,
            rows_per_month=100_000,
            seed=5,
        )
        return home, projects, big.stem

    return make


def instance_at(dagster_home: Path) -> Any:
    """The platform's embedded instance, its storage created here first (so that no two
    processes race to create it)."""
    import dagster as dg

    from mlplatform.defs.runs import write_instance_yaml

    dagster_home.mkdir(parents=True, exist_ok=True)
    write_instance_yaml(dagster_home / "dagster.yaml")
    return dg.DagsterInstance.from_config(str(dagster_home))


def in_flight(instance: Any) -> list[Any]:
    return [r for r in instance.get_runs() if r.status.value in IN_FLIGHT]


def start_ui(home: Path, projects: Path, cwd: Path) -> tuple[Proc, str]:
    port = files.free_port()
    argv = [str(BIN / "mlplatform"), "ui", "--port", str(port), "--home", str(home)]
    argv += ["--projects", str(projects)]
    return Proc.start(argv, files.base_env(), cwd), f"http://127.0.0.1:{port}"


def stop_within(proc: Proc, sig: signal.Signals, folder: Path) -> float:
    """Send ``sig``; every process of the tree (and every process working in ``folder``) must
    be gone within STOP_SECONDS; returns the seconds it took."""
    tree = proc.tree()
    started = time.monotonic()
    proc.proc.send_signal(sig)
    try:
        wait_for(
            f"every process to exit after {sig.name}",
            lambda: not alive(tree) and not working_in(folder),
            STOP_SECONDS,
            interval=0.1,
            details=lambda: f"left: {alive(tree)} {working_in(folder)}\n{proc.tail()}",
        )
    finally:
        kill_all({**tree, **proc.tree()})
    proc.proc.wait(timeout=10)
    return time.monotonic() - started


def test_sigterm_stops_the_ui_and_everything_it_started_and_the_run_ends(
    big_project: Callable[[str], tuple[Path, Path, str]], tmp_path: Path
) -> None:
    import dagster as dg
    from dagster_graphql import DagsterGraphQLClient

    home, projects, partition = big_project("stopui")
    instance = instance_at(home / "dagster")
    ui, url = start_ui(home, projects, tmp_path)
    try:

        def location_loaded() -> bool:
            try:
                answer = httpx.post(
                    f"{url}/graphql", json={"query": "{ assetNodes { assetKey { path } } }"}
                )
            except httpx.HTTPError:
                return False
            return answer.status_code == 200 and "stopui" in answer.text

        wait_for("the web UI to load the code location", location_loaded, 180, details=ui.tail)
        client = DagsterGraphQLClient("127.0.0.1", port_number=int(url.rsplit(":", 1)[1]))
        run_id = client.submit_job_execution(
            "stopui__data",
            repository_location_name="mlplatform",
            repository_name="__repository__",
            tags={"dagster/partition": partition},
        )

        def raw_started() -> bool:
            events = instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_START)
            return any(e.step_key == "stopui__raw" for e in events)

        wait_for("the run's raw step to start", raw_started, 180, interval=0.1, details=ui.tail)
        assert len(ui.tree()) >= 5  # supervisor, dagster dev, webserver, daemon, code server...
        took = stop_within(ui, signal.SIGTERM, home)
    finally:
        kill_all(ui.tree())
    print(f"mlplatform ui stopped in {took:.1f} s")
    run = instance.get_run_by_id(run_id)
    assert run is not None
    events = [f"{e.dagster_event_type}: {e.message}" for e in instance.all_logs(run_id)]
    assert run.status in (dg.DagsterRunStatus.CANCELED, dg.DagsterRunStatus.FAILURE), (
        "\n".join(events[-12:]) + "\n" + ui.tail()
    )
    assert in_flight(instance) == []
    assert "stopping (SIGTERM)" in ui.text() and "stopped in" in ui.text()
    assert ui.proc.returncode == 0


def test_a_run_left_started_by_a_killed_process_is_failed_when_the_ui_starts(
    big_project: Callable[[str], tuple[Path, Path, str]], tmp_path: Path
) -> None:
    import dagster as dg

    home, projects, _ = big_project("orphan")
    instance = instance_at(home / "dagster")
    argv = [str(BIN / "mlplatform"), "materialize", "orphan", "--assets", "data"]
    argv += ["--home", str(home), "--projects", str(projects)]
    materialize = Proc.start(argv, files.base_env(), tmp_path)
    try:

        def started() -> Any:
            return next((r for r in instance.get_runs() if r.status.value == "STARTED"), None)

        run = wait_for("the run to start", started, 120, interval=0.1, details=materialize.tail)
        os.killpg(materialize.proc.pid, signal.SIGKILL)
        materialize.proc.wait(timeout=10)
    finally:
        kill_all(materialize.tree())
    left = instance.get_run_by_id(run.run_id)
    assert left is not None and left.status == dg.DagsterRunStatus.STARTED

    ui, _ = start_ui(home, projects, tmp_path)
    try:
        line = ui.wait_line("was left in progress", 120)
        assert run.run_id[:8] in line and "marked FAILURE" in line
        failed = instance.get_run_by_id(run.run_id)
        assert failed is not None and failed.status == dg.DagsterRunStatus.FAILURE
        messages = [e.message or "" for e in instance.all_logs(run.run_id)]
        assert any(
            m.startswith("mlplatform ui (start): the process that ran it (pid ") for m in messages
        ), messages[-3:]
        stop_within(ui, signal.SIGTERM, home)  # also while dagster dev is still starting
    finally:
        kill_all(ui.tree())


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_one_signal_stops_materialize(
    make_project: ProjectFactory, tmp_path: Path, sig: signal.Signals
) -> None:
    import dagster as dg

    project = make_project("binary", months=6, rows=3000)
    name = project.spec.name
    argv = [str(BIN / "mlplatform"), "materialize", name, "--assets", "data"]
    argv += ["--home", str(project.home), "--projects", str(project.settings.projects_dir)]
    materialize = Proc.start(argv, files.base_env(), tmp_path)
    try:
        materialize.wait_line("[1/6]", 180)
        started = time.monotonic()
        materialize.proc.send_signal(sig)
        code = materialize.proc.wait(timeout=STOP_SECONDS)
        took = time.monotonic() - started
    finally:
        kill_all(materialize.tree())
    print(f"mlplatform materialize stopped in {took:.1f} s")
    assert code == 128 + sig, materialize.tail()
    out = materialize.text()
    assert f"stopped by {sig.name}" in out
    assert f"not run: {name}__data" in out
    with dg.DagsterInstance.from_config(str(project.home / "dagster")) as instance:
        runs = instance.get_runs()
        assert len(runs) in range(1, 6), [r.status for r in runs]
        assert in_flight(instance) == []
        assert sum(r.status == dg.DagsterRunStatus.SUCCESS for r in runs) < 6
        raw = instance.get_materialized_partitions(dg.AssetKey([name, "raw"]))
        assert len(raw) < 6


def snapshot(folder: Path) -> dict[str, float]:
    return {str(p.relative_to(folder)): p.stat().st_mtime for p in folder.rglob("*")}


def test_dagster_cli_refuses_another_instance_and_writes_nothing(
    make_project: ProjectFactory, tmp_path: Path
) -> None:
    from mlplatform.defs.runs import write_instance_yaml

    project = make_project("binary", months=1, rows=120)
    name, key = project.spec.name, project.files[0].stem
    home = project.home
    env = files.base_env(
        MLPLATFORM_HOME=str(home), MLPLATFORM_PROJECTS_DIR=str(project.settings.projects_dir)
    )
    argv = [str(BIN / "dagster"), "asset", "materialize", "-m", "mlplatform.definitions"]
    argv += ["--select", f"{name}/raw", "--partition", key]
    other = tmp_path / "other"
    other.mkdir()
    before = snapshot(home)
    settings = load_settings(home=home)
    for dagster_home in (None, str(other)):
        run_env = env if dagster_home is None else {**env, "DAGSTER_HOME": dagster_home}
        result = subprocess.run(
            argv, env=run_env, cwd=tmp_path, capture_output=True, text=True, timeout=120
        )
        assert result.returncode != 0, result.stdout
        ours = [line for line in result.stderr.splitlines() if line.startswith("mlplatform")]
        assert ours == [instance_problem(settings, dagster_home)], result.stderr
        assert snapshot(home) == before
    # the platform's own instance: the run is recorded where `mlplatform` reads it
    (home / "dagster").mkdir()
    write_instance_yaml(home / "dagster" / "dagster.yaml")
    result = subprocess.run(
        argv,
        env={**env, "DAGSTER_HOME": str(home / "dagster")},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    import dagster as dg

    with dg.DagsterInstance.from_config(str(home / "dagster")) as instance:
        assert instance.get_materialized_partitions(dg.AssetKey([name, "raw"])) == {key}


def test_a_web_ui_on_another_instance_shows_the_line_as_the_locations_error(
    make_project: ProjectFactory, tmp_path: Path
) -> None:
    project = make_project("binary", months=1, rows=120)
    home = project.home
    port = files.free_port()
    env = files.base_env(
        MLPLATFORM_HOME=str(home), MLPLATFORM_PROJECTS_DIR=str(project.settings.projects_dir)
    )
    before = snapshot(home)
    argv = [str(BIN / "dagster-webserver"), "-w", str(files.ROOT / "workspace.yaml")]
    web = Proc.start([*argv, "-p", str(port)], env, tmp_path)  # as `dagster dev` would
    query = """{ workspaceOrError { ... on Workspace { locationEntries { name
        locationOrLoadError { __typename ... on PythonError { message causes { message } } }
    } } } }"""

    def location_error() -> tuple[str, str] | None:
        try:
            answer = httpx.post(f"http://127.0.0.1:{port}/graphql", json={"query": query})
        except httpx.HTTPError:
            return None
        entries = answer.json()["data"]["workspaceOrError"]["locationEntries"]
        error = entries[0]["locationOrLoadError"] if entries else None
        if not error or error["__typename"] != "PythonError":
            return None
        messages = [error["message"], *(c["message"] for c in error["causes"])]
        return entries[0]["name"], "\n".join(messages)

    try:
        name, error = wait_for(
            "the code location's load error", location_error, 120, details=web.tail
        )
        line = instance_problem(load_settings(home=home), None)
        assert name == "mlplatform"
        assert line is not None and line in error
        assert line in web.text()
        assert snapshot(home) == before
    finally:
        stop_within(web, signal.SIGTERM, tmp_path / "nothing")


@pytest.fixture(autouse=True)
def _no_leftovers(tmp_path: Path) -> Iterator[None]:
    yield
    left = working_in(tmp_path)
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert left == [], f"processes left working in {tmp_path}: {left}"
