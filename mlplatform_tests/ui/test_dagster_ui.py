"""The Dagster web UI in a real browser (Debian's Chromium via Playwright), on the processes
the Docker images run: the code server and the webserver are started with the exact commands of
docker/docker-compose.yml (host, port and the in-image workspace path swapped for local ones),
the webserver reads the team workspace (gRPC to the code server), and both must pass their
compose health checks.

In the UI: dismiss the first-visit dialog, open the asset lineage, select the project's raw
asset, launch one partition from the partition dialog, see the run succeed and the raw checks
pass. The instance confirms that exactly that partition was materialized.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from mlplatform.examples.generate import generate_example
from mlplatform.spec import load_spec
from mlplatform_tests.docker import files
from mlplatform_tests.projects import variant
from mlplatform_tests.waiting import wait_for

PROJECT = "webui"
RUN_SECONDS = 120  # launch to success (the run process loads the definitions first)


@dataclass
class Stack:
    base_url: str
    dagster_home: Path
    partition: str
    landed: list[str]
    code_server: files.Process
    webserver: files.Process
    health: dict[str, Callable[[], bool]]


def health_command(service: str, port: int) -> list[str]:
    """The service's compose health check (exec form), pointed at ``port``."""
    test = files.compose()["services"][service]["healthcheck"]["test"]
    assert test[0] == "CMD", test
    return files.local(files.with_option(test[1:], "-p", str(port)))


def health_url(service: str, port: int) -> str:
    test = " ".join(files.compose()["services"][service]["healthcheck"]["test"])
    (url,) = re.findall(r"http://127\.0\.0\.1:\d+/[\w/]*", test)
    return re.sub(r":\d+/", f":{port}/", url, count=1)


def image_path(path: str) -> Path:
    """The repository file the platform image has at ``path`` (a COPY destination)."""
    for ins in files.final_stage(files.PLATFORM_DOCKERFILE):
        if ins.keyword == "COPY" and not ins.args.startswith("--from"):
            src, dest = ins.args.split()
            if dest == path:
                return files.ROOT / src
    raise AssertionError(f"the platform image has no {path}")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    import dagster as dg

    tmp = tmp_path_factory.mktemp("dagster-ui")
    projects, home = tmp / "projects", tmp / "home"
    projects.mkdir()
    spec_data = variant("binary", PROJECT)
    (projects / f"{PROJECT}.yaml").write_text(yaml.safe_dump(spec_data, sort_keys=False))
    spec = load_spec(projects / f"{PROJECT}.yaml")
    landed = generate_example(spec.landing_dir(home), months=2, rows_per_month=120, seed=3)
    dagster_home = files.sqlite_instance(tmp / "dagster")
    # Create the storage before two processes race to create (and stamp) it.
    with dg.DagsterInstance.from_config(str(dagster_home)):
        pass
    code_port, web_port = files.free_port(), files.free_port()
    env = files.base_env(
        DAGSTER_HOME=str(dagster_home),
        MLPLATFORM_DAGSTER_HOME_DIR=str(dagster_home),  # as the image and compose set it
        MLPLATFORM_HOME=str(home),
        MLPLATFORM_PROJECTS_DIR=str(projects),
        DAGSTER_CODE_SERVER_HOST="127.0.0.1",
        DAGSTER_CODE_SERVER_PORT=str(code_port),
    )
    code_cmd = files.service_command("code-server")
    code_cmd = files.with_option(code_cmd, "-p", str(code_port))
    code_cmd = files.with_option(code_cmd, "-h", "127.0.0.1")
    web_cmd = files.service_command("webserver")
    workspace = image_path(web_cmd[web_cmd.index("-w") + 1])
    web_cmd = files.with_option(web_cmd, "-w", str(workspace))
    web_cmd = files.with_option(files.with_option(web_cmd, "-p", str(web_port)), "-h", "127.0.0.1")

    def code_server_healthy() -> bool:
        check = health_command("code-server", code_port)
        return subprocess.run(check, env=env, capture_output=True, timeout=30).returncode == 0

    def webserver_healthy() -> bool:
        try:
            return httpx.get(health_url("webserver", web_port), timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    with ExitStack() as procs:
        # Both at once: the webserver picks the code location up when the code server is ready.
        code = procs.enter_context(
            files.running(files.local(code_cmd), env, tmp / "code-server.log", tmp)
        )
        web = procs.enter_context(
            files.running(files.local(web_cmd), env, tmp / "webserver.log", tmp)
        )
        files.wait_until("the webserver's compose health check", webserver_healthy, 90, web)
        # Poll in process (a CLI call costs seconds of CPU the loading server needs), then
        # the compose health check itself must pass.
        from dagster._grpc.client import DagsterGrpcClient

        grpc = DagsterGrpcClient(port=code_port, host="127.0.0.1")
        files.wait_until(
            "the code server to serve",
            lambda: grpc.health_check_query() == "SERVING",
            180,
            code,
            web,
        )
        assert code_server_healthy(), "dagster api grpc-health-check (compose) failed"
        yield Stack(
            base_url=f"http://127.0.0.1:{web_port}",
            dagster_home=dagster_home,
            partition=landed[-1].stem,
            landed=[f.stem for f in landed],
            code_server=code,
            webserver=web,
            health={"code-server": code_server_healthy, "webserver": webserver_healthy},
        )


def test_compose_commands_pass_their_health_checks(stack: Stack) -> None:
    """Both passed their compose health checks in the fixture; the webserver still does and
    serves the Dagster version we lock."""
    assert stack.health["webserver"]()
    info = httpx.get(f"{stack.base_url}/server_info", timeout=5).json()
    assert info["dagster_version"] == dg_version()
    assert stack.code_server.proc.poll() is None and stack.webserver.proc.poll() is None


def dg_version() -> str:
    import dagster as dg

    return dg.__version__


def test_materialize_one_partition_from_the_asset_graph(
    stack: Stack, browser: Any, tmp_path: Path
) -> None:
    import dagster as dg
    from playwright.sync_api import expect

    context = browser.new_context(viewport={"width": 1400, "height": 900})
    context.set_default_timeout(30_000)
    page = context.new_page()
    shots = iter(range(1, 100))

    def shot(label: str) -> Path:
        path = tmp_path / f"{next(shots):02d}-{label}.png"
        page.screenshot(path=str(path))
        return path

    # The first-visit ("Join the Dagster community") dialog may cover anything, any time.
    page.add_locator_handler(
        page.get_by_role("dialog").filter(has_text="Join the Dagster community"),
        lambda dialog: dialog.get_by_role("button", name="Skip").click(),
    )
    try:
        page.goto(stack.base_url)
        nav = page.get_by_role("navigation")
        nav.get_by_role("link", name=re.compile(r"\bLineage$")).click()
        expect(page.get_by_text("Global asset lineage")).to_be_visible()

        # Select the project's raw asset (its key is <project>/raw) in the graph's sidebar.
        page.get_by_role("button", name=re.compile(r"\braw raw$")).click()
        expect(page).to_have_url(re.compile(rf"/asset-groups/{PROJECT}%2Fraw"))
        expect(page.get_by_text(f"{PROJECT} / raw").first).to_be_visible()
        shot("raw-selected")

        # The partition dialog: exactly one partition, the newest landed file.
        page.get_by_role("button", name="Materialize selected…").click()
        dialog = page.get_by_role("dialog").filter(has_text="Launch runs to materialize")
        expect(dialog).to_contain_text(f"{PROJECT} / raw")
        expect(dialog.get_by_text("Partition selection")).to_be_visible()
        show_all = dialog.get_by_text("Show all partitions")
        if show_all.is_visible():
            show_all.click()
        keys = dialog.get_by_role("textbox").first
        keys.fill(stack.partition)
        keys.press("Enter")
        expect(dialog.get_by_text("1 partition", exact=True)).to_be_visible()
        shot("one-partition")
        dialog.get_by_role("button", name="Launch 1 run").click()
        expect(dialog).to_be_hidden(timeout=60_000)

        # The run, found in the runs list, succeeds.
        with dg.DagsterInstance.from_config(str(stack.dagster_home)) as instance:
            wait_for("the launched run to be recorded", instance.get_run_records, 30)
            (record,) = instance.get_run_records()
        run_id = record.dagster_run.run_id
        nav.get_by_role("link", name=re.compile(r"\bRuns$")).click()
        page.locator(f'a[href="/runs/{run_id}"]').first.click()
        expect(page).to_have_url(re.compile(rf"/runs/{run_id}"))
        expect(page.get_by_text(f"partition: {stack.partition}").first).to_be_visible()
        expect(page.get_by_text("Success", exact=True).first).to_be_visible(
            timeout=RUN_SECONDS * 1000
        )
        expect(page.get_by_text("Failure", exact=True)).to_have_count(0)
        shot("run-succeeded")

        # The raw asset's checks (all those the run planned): every one ran and passed.
        checks = sorted(key.name for key in record.dagster_run.asset_check_selection or ())
        assert len(checks) >= 4, checks
        page.goto(f"{stack.base_url}/assets/{PROJECT}/raw?view=checks")
        expect(page.get_by_text(f"Checks ({len(checks)})")).to_be_visible()
        for name in checks:
            expect(page.get_by_text(name, exact=True).first).to_be_visible()
        expect(page.get_by_text("Succeeded", exact=True)).to_have_count(len(checks))
        expect(page.get_by_text("Failed", exact=True)).to_have_count(0)
        shot("checks-passed")
    except BaseException as exc:
        failure = shot("failure")
        raise AssertionError(
            f"{exc}\nscreenshot: {failure}\nwebserver log:\n{stack.webserver.tail(2000)}"
        ) from exc
    finally:
        context.close()

    # The instance agrees: one successful run, of exactly that partition, all checks passed.
    with dg.DagsterInstance.from_config(str(stack.dagster_home)) as instance:
        run = instance.get_run_by_id(run_id)
        assert run is not None and run.status == dg.DagsterRunStatus.SUCCESS
        assert run.tags["dagster/partition"] == stack.partition
        raw = dg.AssetKey([PROJECT, "raw"])
        assert instance.get_materialized_partitions(raw) == {stack.partition}
        assert stack.partition in stack.landed and len(stack.landed) == 2
        evaluations = [
            e.get_dagster_event().asset_check_evaluation_data
            for e in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
        ]
        assert sorted(e.check_name for e in evaluations) == checks
        assert all(e.passed for e in evaluations)
