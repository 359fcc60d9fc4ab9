"""`mlplatform candidates` groups bundles by cutoff (one holdout each), marks the best only
within a holdout, the production bundle, and the cutoff's best baseline."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from typer.testing import CliRunner

from mlplatform.bundles.format import bundle_id_of
from mlplatform.cli import app
from mlplatform.ledger import Ledger
from mlplatform.settings import load_settings
from mlplatform_tests.projects import variant


def bundle(home: Path, cutoff: str, candidate: str, roc_auc: float) -> str:
    """A published bundle folder (manifest only) named by its id; returns the id."""
    manifest: dict[str, object] = {
        "project": "shop",
        "cutoff": cutoff,
        "candidate": candidate,
        "metrics": {"roc_auc": roc_auc},
    }
    manifest["bundle_id"] = bundle_id = bundle_id_of(manifest)
    folder = home / "bundles" / bundle_id
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    return bundle_id


def test_candidates_are_grouped_by_holdout(tmp_path: Path) -> None:
    projects, home = tmp_path / "projects", tmp_path / "home"
    projects.mkdir()
    (projects / "shop.yaml").write_text(yaml.safe_dump(variant("binary", "shop")))
    old, new = "2024-03-01", "2024-04-01"
    a = bundle(home, old, "forest", 0.91)  # the best number, on another holdout
    b = bundle(home, old, "logreg", 0.85)
    c = bundle(home, new, "logreg", 0.70)
    d = bundle(home, new, "forest", 0.78)
    evaluation = {
        "result": {
            "models": {
                "baseline-prior": {"kind": "baseline", "metrics": {"roc_auc": 0.5}},
                "forest": {"kind": "candidate", "metrics": {"roc_auc": 0.78}},
            }
        }
    }
    (home / "evaluations" / "shop").mkdir(parents=True)
    (home / "evaluations" / "shop" / f"{new}.json").write_text(json.dumps(evaluation))
    ledger = Ledger(load_settings(home=home, projects_dir=projects).ledger)
    ledger.promote("shop", b, "ci", "first", expected_from=None)
    ledger.dispose()

    result = CliRunner().invoke(
        app, ["candidates", "shop", "--home", str(home), "--projects", str(projects)]
    )
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    heads = [i for i, line in enumerate(lines) if line.startswith("cutoff ")]
    assert [lines[i].split()[1] for i in heads] == [new, old]  # newest holdout first
    newer, older = lines[heads[0] : heads[1]], lines[heads[1] :]
    assert "best baseline: baseline-prior roc_auc 0.5000" in newer[1]
    row = {line.split()[0]: line for line in lines if line.startswith("  ")}
    assert row[d[:12]].endswith("best of this holdout")  # 0.78 beats 0.70, not 0.91
    assert "best" not in row[c[:12]]
    assert row[a[:12]].endswith("best of this holdout")
    assert row[b[:12]].endswith("production") and "best" not in row[b[:12]]
    assert [d[:12] in line for line in newer].index(True) < [
        c[:12] in line for line in newer
    ].index(True)
    assert all(b[:12] not in line for line in newer) and any(b[:12] in line for line in older)


def test_candidates_skip_a_folder_whose_manifest_does_not_match_its_id(tmp_path: Path) -> None:
    """The CLI lists bundles through the same catalog as the API: an altered manifest (or one
    copied under another id) is not a published bundle."""
    projects, home = tmp_path / "projects", tmp_path / "home"
    projects.mkdir()
    (projects / "shop.yaml").write_text(yaml.safe_dump(variant("binary", "shop")))
    good = bundle(home, "2024-03-01", "forest", 0.91)
    altered = bundle(home, "2024-03-01", "logreg", 0.85)
    path = home / "bundles" / altered / "manifest.json"
    manifest = json.loads(path.read_text(encoding="utf-8"))
    manifest["metrics"]["roc_auc"] = 0.99
    path.write_text(json.dumps(manifest), encoding="utf-8")

    result = CliRunner().invoke(
        app, ["candidates", "shop", "--home", str(home), "--projects", str(projects)]
    )
    assert result.exit_code == 0, result.output
    assert good[:12] in result.output
    assert altered[:12] not in result.output
