"""What the command line prints: the materialize summary, one-line errors, no library noise."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mlplatform.cli.summary import summary_lines
from mlplatform.spec import ProjectSpec


def gate(metric: str, value: float, passed: bool, low: float | None = None) -> dict:
    return {"metric": metric, "value": value, "min": low, "max": None, "passed": passed}


def test_summary_names_the_failed_gates_and_their_reasons(churn_spec: ProjectSpec) -> None:
    evaluation = {
        "result": {
            "primary_metric": "roc_auc",
            "winner": None,
            "reasons": ["no candidate passed every gate"],
            "models": {
                "logreg": {
                    "metrics": {"roc_auc": 0.61},
                    "gates": [gate("roc_auc", 0.61, False, 0.9)],
                },
                "forest": {
                    "metrics": {"roc_auc": 0.66},
                    "gates": [gate("roc_auc", 0.66, False, 0.9)],
                },
            },
        }
    }
    lines = summary_lines(churn_spec, "2024-05-01", evaluation, None)
    assert lines[0] == "  cutoff 2024-05-01: no winner"
    assert "    gate logreg: roc_auc 0.6100 (min 0.9) FAILED" in lines
    assert "    gate forest: roc_auc 0.6600 (min 0.9) FAILED" in lines
    assert "    reason: no candidate passed every gate" in lines
    assert lines[-1] == "    bundle: -"


def test_summary_compares_the_winner_with_production_and_baselines(
    churn_spec: ProjectSpec,
) -> None:
    evaluation = {
        "result": {
            "primary_metric": "roc_auc",
            "winner": "forest",
            "models": {
                "production": {"metrics": {"roc_auc": 0.7}},
                "baseline-prior": {"metrics": {"roc_auc": 0.5}, "gates": []},
                "forest": {
                    "metrics": {"roc_auc": 0.8},
                    "gates": [
                        gate("roc_auc", 0.8, True, 0.55),
                        {
                            **gate("pr_auc", 0.4, True),
                            "min_lift": 0.1,
                            "baseline": "baseline-prior",
                            "baseline_value": 0.2,
                            "lift": 0.2,
                        },
                    ],
                },
            },
        }
    }
    lines = summary_lines(churn_spec, "2024-05-01", evaluation, "/b/123")
    assert lines[0] == (
        "  cutoff 2024-05-01: winner forest, roc_auc 0.8000 "
        "(vs production 0.7000, baseline-prior 0.5000)"
    )
    assert "    gate forest: roc_auc 0.8000 (min 0.55) passed" in lines
    assert (
        "    gate forest: pr_auc 0.4000 (min_lift 0.1) vs baseline-prior 0.2000, lift +0.2000 "
        "passed"
    ) in lines
    assert lines[-1] == "    bundle: /b/123"

    evaluation["result"]["models"].pop("production")
    evaluation["result"]["production"] = {
        "bundle_id": "abc",
        "comparable": False,
        "note": "not comparable: production trained on this holdout",
    }
    lines = summary_lines(churn_spec, "2024-05-01", evaluation, None)
    assert "production: not comparable: production trained on this holdout" in lines[0]


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    code = (
        "import sys\n"
        "from mlplatform.cli import app\n"
        "try:\n"
        f"    app({list(args)!r})\n"
        "finally:\n"
        "    print('optuna imported:', 'optuna' in sys.modules)\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONWARNINGS": "default"},
    )


@pytest.mark.e2e  # runs the CLI as a process
def test_unexpected_errors_are_one_line_without_verbose(tmp_path: Path) -> None:
    (tmp_path / "landing").write_text("a file where a folder should be")
    args = ["generate", "--months", "1", "--rows", "10", "--home", str(tmp_path)]
    result = cli(*args)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("mlplatform: ") and "run with -v for the stack trace" in line
    assert "optuna imported: False" in result.stdout

    result = cli("-v", *args)
    assert result.returncode == 1 and "Traceback" in result.stderr
