"""Warm run workers (issue 11): the fork launcher with a real warm server, real forked children
and a real SQLite instance; the daemon path through ``mlplatform ui`` in test_clean_stops-style.

- a run handed to the warm server succeeds; its child's pid is in the run's tags (and is the
  pid that executed it);
- a run whose job snapshot is not the warm server's definitions is never executed there: the
  server is restarted once, then the default launch is used;
- a killed child is reported by ``check_run_worker_health``; ``terminate`` cancels a child.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlplatform.defs.fork_launcher import WARM_TAG, ForkRunLauncher, answers, socket_path
from mlplatform.defs.orphaned_runs import PID_TAG
from mlplatform_tests.projects import Project, ProjectFactory
from mlplatform_tests.waiting import wait_for

pytestmark = pytest.mark.e2e

LAUNCHER_YAML = "run_launcher:\n  module: mlplatform.defs.fork_launcher\n  class: ForkRunLauncher\n"


@pytest.fixture
def warm_home(
    make_project: ProjectFactory, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Project, Any]]:
    """A small project and its platform instance with the fork launcher; the warm server (if
    one started) stopped afterwards."""
    import dagster as dg

    from mlplatform.defs.runs import ensure_dagster_home

    project = make_project("binary", months=2, rows=300, name="warm")
    settings = project.settings
    monkeypatch.setenv("MLPLATFORM_HOME", str(settings.home))
    monkeypatch.setenv("MLPLATFORM_PROJECTS_DIR", str(settings.projects_dir))
    home = ensure_dagster_home(settings)  # exports DAGSTER_HOME
    yaml_path = home / "dagster.yaml"
    if "ForkRunLauncher" not in yaml_path.read_text():  # opt-in: not the embedded default
        yaml_path.write_text(yaml_path.read_text() + LAUNCHER_YAML)
    instance = dg.DagsterInstance.from_config(str(home))
    try:
        yield project, instance
    finally:
        instance.dispose()  # the launcher stops the server it started


def python_origin(job_name: str) -> Any:
    """The code origin of ``job_name`` in ``mlplatform.definitions`` (as a code server has it)."""
    from dagster._core.definitions.reconstruct import ReconstructableRepository

    repo = ReconstructableRepository.for_module(
        "mlplatform.definitions", "defs", working_directory=os.getcwd()
    )
    return repo.get_reconstructable_job(job_name).get_python_origin()


def create_run(instance: Any, job_def: Any, partition: str) -> Any:
    return instance.create_run_for_job(
        job_def=job_def,
        job_code_origin=python_origin(job_def.name),
        tags={"dagster/partition": partition},
        status="NOT_STARTED",
    )


def launch(instance: Any, run: Any) -> None:
    """Launch as the daemon does (STARTING, then the launcher), with no workspace: only the
    default launch path needs one."""
    assert isinstance(instance.run_launcher, ForkRunLauncher)
    instance.launch_run(run.run_id, workspace=None)


def finished(instance: Any, run_id: str) -> Any:
    run = instance.get_run_by_id(run_id)
    return run if run is not None and run.is_finished else None


def engine_pids(instance: Any, run_id: str) -> set[int]:
    import dagster as dg

    pids = set()
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
        data = entry.dagster_event.event_specific_data
        value = getattr(data, "metadata", {}).get("pid")
        if value is not None:
            pids.add(int(value.value))
    return pids


def data_job(project: Project) -> Any:
    from mlplatform.defs.build import build_defs, data_job_name

    defs = build_defs(project.settings, [project.spec])
    return defs.resolve_job_def(data_job_name(project.spec.name))


def test_a_run_handed_to_the_warm_server_succeeds_in_a_forked_child(
    warm_home: tuple[Project, Any],
) -> None:
    import dagster as dg

    project, instance = warm_home
    partition = project.files[0].stem
    run = create_run(instance, data_job(project), partition)
    launch(instance, run)
    done = wait_for("the run to finish", lambda: finished(instance, run.run_id), 120)
    events = [e.message for e in instance.all_logs(run.run_id)][-8:]
    assert done.status == dg.DagsterRunStatus.SUCCESS, events
    pid = int(done.tags[PID_TAG])
    assert done.tags[WARM_TAG] == "warm"
    assert engine_pids(instance, run.run_id) == {pid}  # the child executed it, nobody else
    assert pid != os.getpid()
    assert answers(socket_path(Path(instance.root_directory)))
    assert instance.get_materialized_partitions(dg.AssetKey([project.spec.name, "features"])) == {
        partition
    }


def test_a_run_of_other_definitions_is_never_executed_by_the_warm_server(
    warm_home: tuple[Project, Any],
) -> None:
    """The run's job snapshot is of another job of the same name (another code version): the
    server is restarted once, then the default launch is asked for (here: no workspace, so it
    raises and the run is failed); no step ran."""
    import dagster as dg

    from mlplatform.defs.build import data_job_name

    project, instance = warm_home
    marker = project.settings.home / "stale-code-ran"

    @dg.op
    def leave_marker() -> None:
        marker.write_text("ran")

    @dg.job(name=data_job_name(project.spec.name))
    def other() -> None:
        leave_marker()

    run = create_run(instance, other, project.files[0].stem)
    with pytest.raises(dg.DagsterInvariantViolationError, match="workspace"):
        launch(instance, run)
    messages = [e.message or "" for e in instance.all_logs(run.run_id)]
    assert any("Warm run worker not used" in m and "snapshot" in m for m in messages), messages
    assert not instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_START)
    current = instance.get_run_by_id(run.run_id)
    assert current is not None and current.status == dg.DagsterRunStatus.FAILURE
    assert PID_TAG not in current.tags and not marker.exists()


def server_pid(instance: Any) -> int:
    from mlplatform.defs.fork_launcher import ask

    return int(ask(socket_path(Path(instance.root_directory)), {"op": "ping"})["pid"])


def test_a_changed_spec_restarts_the_warm_server_before_the_next_run(
    warm_home: tuple[Project, Any],
) -> None:
    """A spec change leaves the job snapshot as it was, but not what the run does: the next
    run is executed by a freshly started server that read the new spec."""
    import dagster as dg

    project, instance = warm_home
    job = data_job(project)
    first = create_run(instance, job, project.files[0].stem)
    launch(instance, first)
    wait_for("the first run to finish", lambda: finished(instance, first.run_id), 120)
    before = server_pid(instance)
    path = project.settings.projects_dir / f"{project.spec.name}.yaml"
    data = yaml.safe_load(path.read_text())
    data["quality"]["min_rows"] = 100_000  # more than the partition has: its check fails
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    second = create_run(instance, job, project.files[1].stem)
    launch(instance, second)
    wait_for("the second run to finish", lambda: finished(instance, second.run_id), 120)
    assert server_pid(instance) != before
    checks = instance.all_logs(second.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
    failed = [e for e in checks if not e.dagster_event.event_specific_data.passed]
    assert failed, "the new spec's min_rows was not applied"


def test_a_killed_child_is_reported_and_terminate_cancels_a_child(
    warm_home: tuple[Project, Any], make_project: ProjectFactory
) -> None:
    import dagster as dg

    _, instance = warm_home
    # partitions of 100k rows: the raw step takes seconds
    big = make_project("binary", months=2, rows=100_000, name="warm")
    launcher = instance.run_launcher
    job = data_job(big)
    runs = [create_run(instance, job, f.stem) for f in big.files]
    for run in runs:
        launch(instance, run)

    def step_started(run_id: str) -> bool:
        return bool(instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_START))

    for run in runs:
        wait_for("the raw step to start", lambda r=run: step_started(r.run_id), 120, interval=0.05)
    killed, canceled = (instance.get_run_by_id(r.run_id) for r in runs)
    assert killed.status == canceled.status == dg.DagsterRunStatus.STARTED
    pid = int(killed.tags[PID_TAG])
    assert launcher.check_run_worker_health(killed).status.value == "RUNNING"
    assert launcher.terminate(canceled.run_id)
    os.kill(pid, signal.SIGKILL)
    health = wait_for(
        "the health check to report the killed child",
        lambda: (h := launcher.check_run_worker_health(killed)).status.value == "FAILED" and h,
        30,
    )
    assert str(pid) in (health.msg or "")
    done = wait_for("the canceled run to end", lambda: finished(instance, canceled.run_id), 60)
    assert done.status == dg.DagsterRunStatus.CANCELED


def test_the_ui_daemon_runs_on_a_warm_worker_and_its_stop_ends_the_server(
    make_project: ProjectFactory, tmp_path: Path
) -> None:
    """Through `mlplatform ui` (webserver, daemon, queue): a submitted run succeeds on a warm
    worker; one SIGTERM stops everything, the warm server included, its socket removed."""
    import dagster as dg
    from dagster_graphql import DagsterGraphQLClient

    from mlplatform.defs.fork_launcher import ask
    from mlplatform.stack import processes
    from mlplatform_tests.e2e.test_clean_stops import instance_at, kill_all, start_ui, stop_within

    project = make_project(
        "binary", months=1, rows=300, name="warmui", automation={"enabled": False}
    )
    home, projects = project.settings.home, project.settings.projects_dir
    instance = instance_at(home / "dagster")
    assert isinstance(instance.run_launcher, ForkRunLauncher)  # the embedded default
    ui, url = start_ui(home, projects, tmp_path)
    try:
        client = DagsterGraphQLClient("127.0.0.1", port_number=int(url.rsplit(":", 1)[1]))

        def submitted() -> str | None:
            try:
                return client.submit_job_execution(
                    "warmui__data",
                    repository_location_name="mlplatform",
                    repository_name="__repository__",
                    tags={"dagster/partition": project.files[0].stem},
                )
            except Exception:  # the web UI or its code location is still starting
                return None

        run_id = wait_for("the web UI to take the run", submitted, 180, details=ui.tail)
        done = wait_for(
            "the run to finish", lambda: finished(instance, run_id), 180, details=ui.tail
        )
        assert done.status == dg.DagsterRunStatus.SUCCESS, ui.tail()
        assert done.tags[WARM_TAG] == "warm"
        assert engine_pids(instance, run_id) == {int(done.tags[PID_TAG])}
        sock = socket_path(home / "dagster")
        server = int(ask(sock, {"op": "ping"})["pid"])
        assert server in ui.tree()
        stop_within(ui, signal.SIGTERM, home)
    finally:
        kill_all(ui.tree())
    assert not processes.alive(server) and not sock.exists()
