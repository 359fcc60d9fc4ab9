"""Torch candidates through the real asset graph: trained next to sklearn, compared in one
report, progress in the run log and MLflow, and exported to a bundle that passes parity."""

from __future__ import annotations

import json

import dagster as dg
from mlflow.tracking import MlflowClient

from mlplatform.bundles.format import load
from mlplatform.defs.build import train_job_name
from mlplatform_tests.defs.test_materialize import checks, ingest_all, materialized, run
from mlplatform_tests.projects import ProjectFactory, example_dict

MLP = {
    "name": "mlp",
    "kind": "torch",
    "params": {"hidden_layers": [16], "max_epochs": 4, "patience": 10, "batch_size": 64},
}
LOGREG = {"name": "logreg", "estimator": "logistic_regression", "params": {"max_iter": 300}}


def test_torch_and_sklearn_compared_in_one_report(
    make_project: ProjectFactory, instance: dg.DagsterInstance
) -> None:
    project = make_project("binary", months=4, rows=300, candidates=[LOGREG, MLP])
    p, cutoff = project.spec.name, project.files[-1].stem
    ingest_all(project, instance)
    result = run(project, train_job_name(p), cutoff, instance)
    assert result.success
    assert {f"{p}/model/mlp", f"{p}/model/logreg", f"{p}/evaluation"} <= materialized(result)

    models = project.home / "models" / p / "mlp"
    assert (models / f"{cutoff}.safetensors").is_file()
    assert (models / f"{cutoff}.torch.json").is_file()
    assert not list(models.glob("*.skops"))
    manifest = json.loads((models / f"{cutoff}.json").read_text())
    assert manifest["kind"] == "torch" and [h["epoch"] for h in manifest["history"]] == [
        1,
        2,
        3,
        4,
    ]
    best = min(manifest["history"], key=lambda h: h["val_loss"])  # first epoch at the minimum
    assert manifest["best_epoch"] == best["epoch"]

    evaluation = json.loads((project.home / "evaluations" / p / f"{cutoff}.json").read_text())
    assert set(evaluation["result"]["models"]) == {"logreg", "mlp", "baseline-prior"}
    assert all("roc_auc" in m["metrics"] for m in evaluation["result"]["models"].values())
    html = (project.home / "reports" / p / f"{cutoff}.html").read_text()
    assert "mlp" in html and "logreg" in html and "earning curve" in html

    epoch_lines = [
        e.user_message
        for e in instance.all_logs(result.run_id)
        if e.user_message.startswith("mlp epoch ")
    ]
    assert len(epoch_lines) == 4 and "val_loss" in epoch_lines[0]
    client = MlflowClient(project.settings.tracking_uri, project.settings.tracking_uri)
    steps = client.get_metric_history(manifest["mlflow_run_id"], "val_loss")
    assert sorted(m.step for m in steps) == [1, 2, 3, 4]
    assert client.get_run(manifest["mlflow_run_id"]).info.status == "FINISHED"


def test_torch_winner_is_bundled_with_parity(
    make_project: ProjectFactory, instance: dg.DagsterInstance
) -> None:
    project = make_project(
        "binary",
        months=4,
        rows=300,
        candidates=[MLP],
        evaluation={"primary_metric": "roc_auc", "gates": [{"metric": "roc_auc", "min": 0.5}]},
    )
    p, cutoff = project.spec.name, project.files[-1].stem
    ingest_all(project, instance)
    result = run(project, train_job_name(p), cutoff, instance)
    assert result.success
    assert checks(result)[f"{p}/bundle:parity"] is True
    (bundle_dir,) = (project.home / "bundles").iterdir()
    bundle = load(bundle_dir)
    assert bundle.manifest["candidate"] == "mlp"
    rows = bundle.predict_rows([{"tenure_months": "3", "plan": "basic"}, {"plan": "unheard-of"}])
    for row in rows:
        assert set(row["probabilities"]) == {"no", "yes"}
        assert abs(sum(row["probabilities"].values()) - 1) < 1e-5


def test_search_picks_params_logs_trials_and_resumes(
    make_project: ProjectFactory, instance: dg.DagsterInstance
) -> None:
    searched = {
        **MLP,
        "params": {**MLP["params"], "max_epochs": 3},
        "search": {
            "n_trials": 3,
            "pruning": False,
            "space": {
                "learning_rate": {"type": "float", "low": 0.0005, "high": 0.05, "log": True},
                "hidden_layers": {"type": "categorical", "choices": [[8], [16, 8]]},
            },
        },
    }
    project = make_project("binary", months=4, rows=300, candidates=[searched])
    p, cutoff = project.spec.name, project.files[-1].stem
    ingest_all(project, instance)
    assert run(project, train_job_name(p), cutoff, instance).success

    manifest_path = project.home / "models" / p / "mlp" / f"{cutoff}.json"
    manifest = json.loads(manifest_path.read_text())
    found = manifest["search"]
    assert found["complete"] == 3 and found["resumed_from"] == 0 and found["metric"] == "roc_auc"
    best = next(t for t in found["trials"] if t["number"] == found["best_trial"])
    assert manifest["params"]["learning_rate"] == best["params"]["learning_rate"]
    assert manifest["params"]["hidden_layers"] == best["params"]["hidden_layers"]
    assert (project.home / "search.db").is_file()

    client = MlflowClient(project.settings.tracking_uri, project.settings.tracking_uri)
    experiment = client.get_experiment_by_name(p).experiment_id
    (parent,) = client.search_runs([experiment], "tags.`mlplatform.kind` = 'search'")
    trials = client.search_runs([experiment], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    assert sorted(int(t.data.tags["mlplatform.trial"]) for t in trials) == [0, 1, 2]

    # the same window again: the finished study is loaded, not searched anew
    assert run(project, train_job_name(p), cutoff, instance).success
    again = json.loads(manifest_path.read_text())["search"]
    assert again["study_name"] == found["study_name"]
    assert again["resumed_from"] == 3 and again["ran"] == 0
    assert again["best_params"] == found["best_params"]


def test_torch_streams_its_sampled_window_and_records_it(
    make_project: ProjectFactory, instance: dg.DagsterInstance
) -> None:
    """The model asset gets the window's feature files, not frames: the manifest says it was
    streamed and sampled to training.max_rows, and the weights equal a fit on the same rows
    as one frame."""
    import pandas as pd

    from mlplatform.spec import Candidate
    from mlplatform.steps import split, train_torch

    training = {**example_dict()["training"], "window": 3, "max_rows": 500}
    project = make_project("binary", months=4, rows=300, candidates=[MLP], training=training)
    p, cutoff = project.spec.name, project.files[-1].stem
    ingest_all(project, instance)
    assert run(project, train_job_name(p), cutoff, instance).success

    models = project.home / "models" / p / "mlp"
    manifest = json.loads((models / f"{cutoff}.json").read_text())
    assert manifest["streamed"] == {"batch_rows": 65536}
    window = [f.stem for f in project.files[:-1]]
    assert manifest["partitions"] == window and manifest["sample"]["max_rows"] == 500
    assert all(manifest["data_versions"][k] for k in window)
    assert sum(manifest["sample"]["rows"].values()) == 500

    stored = project.settings.assets_dir / p / "features"
    frames = {k: pd.read_parquet(stored / f"{k}.parquet") for k in window}
    sampled, sample = split.sampled_window(frames, 500, project.spec.training.seed)
    assert sample == manifest["sample"]
    frame = split.training_frame(sampled)
    expected = train_torch.fit_torch(frame, project.spec, Candidate.model_validate(MLP))
    expected.save(project.home / "expected.safetensors")
    got = (models / f"{cutoff}.safetensors").read_bytes()
    assert got == (project.home / "expected.safetensors").read_bytes()
