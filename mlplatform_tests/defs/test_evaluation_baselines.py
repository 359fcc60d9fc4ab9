"""The evaluation asset fits the regression baselines on the stored training window (and the
partition one season before the holdout) and gates a candidate relative to the best of them."""

from __future__ import annotations

import json

import dagster as dg
import numpy as np
import pytest

from mlplatform.defs.build import build_defs, data_job_name, train_job_name
from mlplatform_tests.projects import ProjectFactory


def test_regression_evaluation_scores_mean_last_and_seasonal_baselines(
    make_project: ProjectFactory, instance: dg.DagsterInstance
) -> None:
    evaluation = {
        "primary_metric": "rmse",
        "gates": [{"metric": "rmse", "beat_baseline": True}],
        "season": 3,
    }
    project = make_project("regression", months=4, rows=150, evaluation=evaluation)
    p, keys = project.spec.name, [f.stem for f in project.files]
    defs = build_defs(project.settings, [project.spec])
    for key in keys:
        job = defs.resolve_job_def(data_job_name(p))
        assert job.execute_in_process(partition_key=key, instance=instance).success
    cutoff = keys[3]  # window keys[0:3]; one season (3 partitions) before: keys[0]
    result = defs.resolve_job_def(train_job_name(p)).execute_in_process(
        partition_key=cutoff, instance=instance
    )
    assert result.success
    (mat,) = result.asset_materializations_for_node(f"{p}__evaluation")
    assert mat.metadata["baselines"].value == "baseline-mean, baseline-last, baseline-seasonal"

    store = defs.resources["store"]
    feats = store.read_partitions(dg.AssetKey([p, "features"]), keys)
    y = feats[cutoff]["lifetime_value"].to_numpy(dtype=float)
    window = [feats[k]["lifetime_value"].to_numpy(dtype=float) for k in keys[:3]]
    constants = {
        "baseline-mean": np.concatenate(window).mean(),
        "baseline-last": window[-1].mean(),
        "baseline-seasonal": window[0].mean(),
    }
    for name, constant in constants.items():
        rmse = float(np.sqrt(np.mean((y - constant) ** 2)))
        assert mat.metadata[f"{name}/rmse"].value == pytest.approx(rmse), name

    stored = json.loads(store.evaluation_file(p, cutoff).read_text("utf-8"))["result"]
    winner = stored["winner"]
    (gate,) = stored["models"][winner]["gates"]
    best = min(constants, key=lambda n: mat.metadata[f"{n}/rmse"].value)
    assert gate["passed"] and gate["beat_baseline"] and gate["baseline"] == best
    assert gate["lift"] == pytest.approx(gate["baseline_value"] - gate["value"])
    assert all(stored["models"][n]["gates"] == [] for n in constants)
