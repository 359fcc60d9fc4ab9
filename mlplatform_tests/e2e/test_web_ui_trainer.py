"""A training run launched from the web UI (Dagster OSS: no users) is credited to ``unknown``,
even with a ``mlplatform/user`` tag typed into the launchpad, and one approval is then not
enough to promote its bundle: whoever approved could be the person who trained it."""

from __future__ import annotations

import json
import os
import pwd
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from mlplatform.ledger import Ledger
from mlplatform.promotion.policy import policy_problems
from mlplatform_tests.docker import files
from mlplatform_tests.e2e.test_clean_stops import instance_at, kill_all, start_ui, stop_within
from mlplatform_tests.projects import ProjectFactory
from mlplatform_tests.waiting import wait_for

pytestmark = pytest.mark.e2e
CLI = [sys.executable, "-m", "mlplatform.cli"]


def test_a_web_ui_training_is_unknown_and_needs_a_second_approver(
    make_project: ProjectFactory, tmp_path: Path
) -> None:
    import dagster as dg
    from dagster_graphql import DagsterGraphQLClient

    project = make_project("binary", months=4, rows=250, automation={"enabled": False})
    name, home = project.spec.name, project.home
    where = ["--home", str(home), "--projects", str(project.settings.projects_dir)]
    env = files.base_env()
    data = subprocess.run(
        [*CLI, "materialize", name, "--assets", "data", *where],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert data.returncode == 0, data.stderr
    cutoff = project.files[-1].stem
    instance = instance_at(home / "dagster")
    ui, url = start_ui(home, project.settings.projects_dir, tmp_path)
    try:

        def location_loaded() -> bool:
            query = {"query": "{ assetNodes { assetKey { path } } }"}
            try:
                answer = httpx.post(f"{url}/graphql", json=query)
            except httpx.HTTPError:
                return False
            return answer.status_code == 200 and name in answer.text

        wait_for("the web UI to load the code location", location_loaded, 180, details=ui.tail)
        client = DagsterGraphQLClient("127.0.0.1", port_number=int(url.rsplit(":", 1)[1]))
        # what the launchpad sends, with a trainer name typed in as a tag
        run_id = client.submit_job_execution(
            f"{name}__train",
            repository_location_name="mlplatform",
            repository_name="__repository__",
            tags={"dagster/partition": cutoff, "mlplatform/user": "bob"},
        )

        def finished() -> dg.DagsterRun | None:
            run = instance.get_run_by_id(run_id)
            return run if run is not None and run.is_finished else None

        run = wait_for("the training run to finish", finished, 420, details=ui.tail)
        assert run.status == dg.DagsterRunStatus.SUCCESS, ui.tail()
    finally:
        try:
            stop_within(ui, signal.SIGTERM, home)
        finally:
            kill_all(ui.tree())
    mat = instance.get_latest_materialization_event(dg.AssetKey([name, "bundle"]))
    assert mat is not None and mat.asset_materialization is not None
    bundle_id = str(mat.asset_materialization.metadata["bundle_id"].value)
    manifest = json.loads((home / "bundles" / bundle_id / "manifest.json").read_text())
    assert manifest["training_manifest"]["triggered_by"] == "unknown"

    approved = subprocess.run(
        [*CLI, "approve", name, bundle_id[:12], *where],
        env={**env, "USER": "bob", "LOGNAME": "bob"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert approved.returncode == 0, approved.stderr
    ledger = Ledger(project.settings.ledger)
    try:
        decisions = ledger.decisions(name, bundle_id)
        assert [d.actor for d in decisions] == [pwd.getpwuid(os.getuid()).pw_name]
        (problem,) = policy_problems(project.spec, manifest, decisions)
        assert problem.startswith("the trainer is unknown")
        assert "needs 2 approvals by distinct identities, has 1" in problem
        second = ledger.record_decision(name, bundle_id, "approve", "another-approver")
        assert policy_problems(project.spec, manifest, [*decisions, second]) == []
    finally:
        ledger.dispose()
