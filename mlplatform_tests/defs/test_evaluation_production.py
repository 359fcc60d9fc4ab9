"""The evaluation scores the current production bundle beside the candidates only on a holdout
production did not train on (ARCHITECTURE §4: "only when production trained on partitions
before this holdout"); otherwise production looks better than it is and fails every gate of
"no worse than production" (a backtest of an earlier cutoff after a promotion)."""

from __future__ import annotations

import json

import dagster as dg

from mlplatform.ledger import Ledger
from mlplatform_tests.projects import Trained


def evaluate_again(t: Trained, cutoff: str) -> dg.ExecuteInProcessResult:
    p = t.project.spec.name
    return dg.materialize(
        [*(t.defs.assets or []), *(t.defs.asset_checks or [])],
        selection=[dg.AssetKey([p, "evaluation"])],
        partition_key=cutoff,
        instance=t.instance,
        resources=dict(t.defs.resources or {}),
        raise_on_error=False,
    )


def test_production_is_compared_only_on_a_holdout_it_did_not_train_on(
    two_bundles: Trained,
) -> None:
    t = two_bundles
    p = t.project.spec.name
    earlier, later = (f.stem for f in t.project.files[3:5])
    newest_bundle = t.bundles[1]  # cutoff `later`: trained on the 3 months up to `earlier`
    Ledger(t.project.settings.ledger).promote(p, newest_bundle, "bob", "test", expected_from=None)

    backtest = evaluate_again(t, earlier)  # production trained on this holdout
    assert backtest.success
    (mat,) = backtest.asset_materializations_for_node(f"{p}__evaluation")
    assert not any(k.startswith("production/") for k in mat.metadata)
    note = "not comparable: production trained on this holdout"
    assert mat.metadata["production"].value == note
    assert mat.metadata["production_bundle"].value == newest_bundle
    assert mat.metadata["production_comparable"].value is False
    # A winner is chosen without the production comparison; the class prior is scored too.
    assert mat.metadata["winner"].value != "none"
    assert "baseline-prior/roc_auc" in mat.metadata
    home = t.project.settings.home
    stored = json.loads((home / "evaluations" / p / f"{earlier}.json").read_text("utf-8"))
    assert stored["result"]["production"] == {
        "bundle_id": newest_bundle,
        "comparable": False,
        "note": note,
    }
    assert stored["result"]["models"]["baseline-prior"]["kind"] == "baseline"
    report = (home / "reports" / p / f"{earlier}.html").read_text("utf-8")
    assert note in report and newest_bundle[:12] in report

    current = evaluate_again(t, later)  # a holdout production never saw: compared
    assert current.success
    (mat,) = current.asset_materializations_for_node(f"{p}__evaluation")
    assert mat.metadata["production"].value == newest_bundle
    assert mat.metadata["production_comparable"].value is True
    assert "production/roc_auc" in mat.metadata
