"""Racing CLI rollbacks (real processes, ``rollback --to A`` ‖ ``rollback --to B``) leave the
MLflow alias ``production`` where the ledger head is, on SQLite and on PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys

from mlplatform.ledger import Ledger
from mlplatform.resources.mlflow import MlflowTracking
from mlplatform_tests.conftest import Trained
from mlplatform_tests.e2e.test_ledger_postgres import postgres  # noqa: F401 - fixture

RACERS = 16
CLI = [sys.executable, "-m", "mlplatform.cli"]


def race_rollbacks(t: Trained, ledger_url: str) -> tuple[str, str | None, list[str]]:
    """A then B promoted, then RACERS rollbacks to A and B alternately, all at once; returns
    (ledger head, alias, outputs)."""
    project, (a, b) = t.project, t.bundles
    p, s = project.spec.name, project.settings
    mlflow = MlflowTracking(tracking_uri=s.tracking_uri, artifact_root=str(s.mlflow_artifacts_dir))
    with Ledger(ledger_url) as ledger:
        ledger.promote(p, a, "bob", "first", expected_from=None)
        ledger.promote(p, b, "bob", "second", expected_from=a)
    mlflow.set_production_alias(p, b)
    env = {**os.environ, "MLPLATFORM_LEDGER_URL": ledger_url}
    racers = [
        subprocess.Popen(
            [
                *CLI,
                "rollback",
                p,
                "--to",
                (a, b)[i % 2],
                "--home",
                str(project.home),
                "--projects",
                str(s.projects_dir),
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(RACERS)
    ]
    outputs = []
    for proc in racers:
        out, _ = proc.communicate(timeout=300)
        outputs.append(f"rc={proc.returncode} {out.strip()}")
    with Ledger(ledger_url) as ledger:
        head = ledger.production(p)
        rows = ledger.history(p)
    assert head is not None
    assert len(rows) >= 3, outputs  # at least one racer rolled back
    return head.to_bundle, mlflow.production_alias(p), outputs


def check(outputs: list[str]) -> None:
    for out in outputs:
        assert "Traceback" not in out, out
        assert out.startswith("rc=0 ") or "rollback refused" in out, out


def test_racing_cli_rollbacks_leave_head_equal_alias(two_bundles: Trained) -> None:
    head, alias, outputs = race_rollbacks(two_bundles, two_bundles.project.settings.ledger)
    check(outputs)
    assert head == alias, "\n".join(outputs)


def test_racing_cli_rollbacks_on_postgres(two_bundles: Trained, postgres: str) -> None:  # noqa: F811
    head, alias, outputs = race_rollbacks(two_bundles, postgres)
    check(outputs)
    assert head == alias, "\n".join(outputs)
