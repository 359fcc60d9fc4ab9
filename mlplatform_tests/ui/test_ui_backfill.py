"""A range backfill launched from the Dagster UI under `mlplatform ui` (webserver + daemon), in
Debian's Chromium: three partitions of raw, each its own run, each run's checks recorded for its
own partition (the UI shows "Partition —" for check results of a run that names none)."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
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

pytestmark = pytest.mark.browser

PROJECT = "uibackfill"
MLPLATFORM = Path(sys.executable).with_name("mlplatform")
# expect()'s own 5 s default is too short while the first-visit dialog handler runs
WAIT_MS = 30_000


@dataclass
class Ui:
    base_url: str
    dagster_home: Path
    landed: list[str]
    process: files.Process


@pytest.fixture(scope="module")
def ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ui]:
    tmp = tmp_path_factory.mktemp("ui-backfill")
    projects, home = tmp / "projects", tmp / "home"
    projects.mkdir()
    data = variant("binary", PROJECT)
    data["automation"] = {"enabled": False}  # the backfill is the only thing that runs
    (projects / f"{PROJECT}.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    spec = load_spec(projects / f"{PROJECT}.yaml")
    landed = generate_example(spec.landing_dir(home), months=4, rows_per_month=120, seed=5)
    port = files.free_port()
    env = files.base_env(MLPLATFORM_MAX_CONCURRENT_RUNS="2")
    command = [str(MLPLATFORM), "ui", "--port", str(port), "--home", str(home)]
    command += ["--projects", str(projects)]
    with files.running(command, env, tmp / "ui.log", tmp) as process:
        base = f"http://127.0.0.1:{port}"

        def location_loaded() -> bool:
            try:
                answer = httpx.post(
                    f"{base}/graphql",
                    json={"query": "{ assetNodes { assetKey { path } } }"},
                    timeout=5,
                )
            except httpx.HTTPError:
                return False
            return answer.status_code == 200 and "uibackfill" in answer.text

        files.wait_until("the web UI to load the code location", location_loaded, 180, process)
        # The first-visit "Join the Dagster community" dialog can open over the materialize
        # dialog at any time; mark it seen, as its Skip button does.
        seen = httpx.post(f"{base}/graphql", json={"query": "mutation { setNuxSeen }"}, timeout=10)
        assert seen.status_code == 200 and seen.json()["data"]["setNuxSeen"], seen.text
        yield Ui(base, home / "dagster", [f.stem for f in landed], process)


def test_range_backfill_of_raw_from_the_ui(ui: Ui, browser: Any, tmp_path: Path) -> None:
    import dagster as dg
    from dagster._core.execution.backfill import BulkActionStatus
    from playwright.sync_api import expect

    wanted = ui.landed[1:]  # three partitions
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    context.set_default_timeout(30_000)
    page = context.new_page()
    page.add_locator_handler(
        page.get_by_role("dialog").filter(has_text="Join the Dagster community"),
        lambda dialog: dialog.get_by_role("button", name="Skip").click(),
    )
    try:
        page.goto(ui.base_url)
        nav = page.get_by_role("navigation")
        nav.get_by_role("link", name=re.compile(r"\bLineage$")).click()
        page.get_by_role("button", name=re.compile(r"\braw raw$")).click()
        expect(page.get_by_text(f"{PROJECT} / raw").first).to_be_visible(timeout=WAIT_MS)
        page.get_by_role("button", name="Materialize selected…").click()
        dialog = page.get_by_role("dialog").filter(has_text="Launch runs to materialize")
        expect(dialog.get_by_text("Partition selection")).to_be_visible(timeout=WAIT_MS)
        # the example's partitions start in 2023: older than the dialog's default 90 days
        dialog.get_by_text("Show all partitions").click()
        expect(dialog.get_by_text("Show all partitions")).to_be_hidden(timeout=WAIT_MS)
        keys = dialog.get_by_role("textbox").first
        keys.fill(f"[{wanted[0]}...{wanted[-1]}]")
        keys.press("Enter")
        expect(dialog.get_by_text("3 partitions", exact=True)).to_be_visible(timeout=WAIT_MS)
        dialog.get_by_role("button", name=re.compile(r"^Launch backfill")).click()
        expect(dialog).to_be_hidden(timeout=60_000)
        page.screenshot(path=str(tmp_path / "launched.png"))
    except BaseException as exc:
        page.screenshot(path=str(tmp_path / "failure.png"))
        raise AssertionError(
            f"{exc}\nscreenshot: {tmp_path / 'failure.png'}\nui log:\n{ui.process.tail(3000)}"
        ) from exc
    finally:
        context.close()

    with dg.DagsterInstance.from_config(str(ui.dagster_home)) as instance:
        raw = dg.AssetKey([PROJECT, "raw"])

        def backfill_done() -> list[Any]:
            backfills = instance.get_backfills()
            done = [b for b in backfills if b.status != BulkActionStatus.REQUESTED]
            return done if backfills and len(done) == len(backfills) else []

        (backfill,) = wait_for(
            "the backfill to finish", backfill_done, 240, details=lambda: ui.process.tail(3000)
        )
        assert backfill.status == BulkActionStatus.COMPLETED_SUCCESS, backfill.status
        assert instance.get_materialized_partitions(raw) == set(wanted)
        runs = instance.get_runs(dg.RunsFilter(tags={"dagster/backfill": backfill.backfill_id}))
        assert sorted(r.tags.get("dagster/partition") for r in runs) == wanted
        assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)
        for run in runs:
            evaluations = [
                e.get_dagster_event().asset_check_evaluation_data
                for e in instance.all_logs(
                    run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION
                )
            ]
            assert len(evaluations) >= 4
            assert {e.partition for e in evaluations} == {run.tags["dagster/partition"]}
            assert all(e.passed for e in evaluations)
