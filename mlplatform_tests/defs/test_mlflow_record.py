"""MLflow as the system of record: after a demo-sized training, the store read through
``MlflowClient`` holds one parent run per cutoff with nested trainings and trials, dataset
inputs with the landing files' digests, every model's holdout metrics, the report, and a
registered version that describes itself and predicts through stock MLflow."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import pandas as pd

from mlplatform.defs.build import train_job_name
from mlplatform.digests import file_sha256
from mlplatform_tests.defs.test_materialize import ingest_all, run
from mlplatform_tests.projects import ProjectFactory

CANDIDATES = [
    {
        "name": "logreg",
        "estimator": "logistic_regression",
        "params": {"C": 0.5, "max_iter": 300},
        # logreg searches C: its trials nest under it
        "search": {
            "n_trials": 2,
            "space": {"C": {"type": "float", "low": 0.05, "high": 5.0, "log": True}},
        },
    },
    {
        "name": "forest",
        "estimator": "random_forest_classifier",
        "params": {"n_estimators": 25, "max_depth": 6, "n_jobs": 1},
    },
]


def test_mlflow_store_after_a_training(
    make_project: ProjectFactory, instance: dg.DagsterInstance
) -> None:
    from mlflow.tracking import MlflowClient

    project = make_project("binary", months=5, rows=300, candidates=CANDIDATES)
    ingest_all(project, instance)
    p = project.spec.name
    cutoff = project.files[-1].stem
    assert run(project, train_job_name(p), cutoff, instance).success

    client = MlflowClient(project.settings.tracking_uri, project.settings.tracking_uri)
    experiment = client.get_experiment_by_name(p)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    runs = {r.info.run_id: r for r in client.search_runs([experiment.experiment_id])}

    (parent,) = [r for r in runs.values() if r.data.tags.get("mlplatform.kind") == "cutoff"]
    assert parent.info.run_name == f"{p} {cutoff}" and parent.info.status == "FINISHED"
    children = {
        r.data.tags["mlplatform.candidate"]: r
        for r in runs.values()
        if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id
    }
    assert set(children) == {"logreg", "forest"}

    # the parent: every candidate's and baseline's holdout metrics, the winner, the report
    metrics = parent.data.metrics
    for model in ("logreg", "forest"):
        assert 0.0 <= metrics[f"{model}/roc_auc"] <= 1.0 and f"{model}/log_loss" in metrics
    baselines = [k for k in parent.data.tags if k.startswith("mlplatform.model.")]
    baseline_names = [
        k.removeprefix("mlplatform.model.") for k in baselines if parent.data.tags[k] == "baseline"
    ]
    assert baseline_names and all(f"{b}/log_loss" in metrics for b in baseline_names)
    winner = parent.data.tags["mlplatform.winner"]
    assert winner in ("logreg", "forest")
    report = client.list_artifacts(parent.info.run_id, "report")
    assert [Path(a.path).name for a in report] == [f"{cutoff}.html"]

    # inputs: the window (training) and the holdout, each with its landing file's sha256
    sha = {f.stem: file_sha256(f) for f in project.files}
    logged = {}
    for item in parent.inputs.dataset_inputs:
        tags = {t.key: t.value for t in item.tags}
        profile = json.loads(item.dataset.profile)
        assert item.dataset.digest == profile["sha256"][:32] == tags["mlplatform.sha256"][:32]
        logged[tags["mlplatform.partition"]] = (tags["mlflow.data.context"], profile["sha256"])
    window = [f.stem for f in project.files[1:4]]
    assert logged == {
        **{k: ("training", sha[k]) for k in window},
        cutoff: ("holdout", sha[cutoff]),
    }

    # a candidate's nested run: params, training metrics and its holdout metrics, the
    # manifest, the window as inputs
    forest = children["forest"]
    assert forest.data.params["n_estimators"] == "25"
    assert forest.data.metrics["holdout_roc_auc"] == metrics["forest/roc_auc"]
    assert "train_rows" in forest.data.metrics
    assert {a.path for a in client.list_artifacts(forest.info.run_id)} >= {"training_manifest.json"}
    forest_inputs = {
        {t.key: t.value for t in i.tags}["mlplatform.partition"]
        for i in forest.inputs.dataset_inputs
    }
    assert forest_inputs == set(window)

    # the search run nests under logreg's training run, its trials under the search
    logreg = children["logreg"]
    (search,) = [
        r
        for r in runs.values()
        if r.data.tags.get("mlplatform.kind") == "search"
        and r.data.tags.get("mlflow.parentRunId") == logreg.info.run_id
    ]
    trials = [
        r
        for r in runs.values()
        if r.data.tags.get("mlflow.parentRunId") == search.info.run_id
        and r.data.tags.get("mlplatform.kind") == "trial"
    ]
    assert len(trials) == 2

    # the registered version: logged in the winner's run, signature, input example, description
    (version,) = client.search_model_versions(f"name = '{p}'")
    assert version.run_id == children[winner].info.run_id
    assert children[winner].info.run_id in version.description
    assert cutoff in version.description and "roc_auc" in version.description
    assert version.tags["code_version"] and version.tags["bundle_id"]
    assert (
        client.get_run(version.run_id).data.tags["mlplatform.bundle_id"]
        == version.tags["bundle_id"]
    )

    import mlflow.pyfunc
    from mlflow.models import Model

    model_dir = Path(client.download_artifacts(version.run_id, "bundle"))
    info = Model.load(str(model_dir / "MLmodel"))
    assert info.signature is not None
    inputs = info.signature.inputs.input_names()
    assert "plan" in inputs and "tenure_months" in inputs and "churned" not in inputs
    example = info.load_input_example(str(model_dir))
    assert example is not None and set(example.columns) == set(inputs)

    client.set_registered_model_alias(p, "production", version.version)
    mlflow.set_registry_uri(project.settings.tracking_uri)
    mlflow.set_tracking_uri(project.settings.tracking_uri)
    model = mlflow.pyfunc.load_model(f"models:/{p}@production")
    out = model.predict(pd.DataFrame(example))
    assert list(out.columns) == ["label", "proba_no", "proba_yes"]
    assert abs(float(out["proba_no"][0] + out["proba_yes"][0]) - 1.0) < 1e-5


def test_logged_model_and_manifest_hold_no_build_paths(
    make_project: ProjectFactory, instance: dg.DagsterInstance
) -> None:
    """No file of the published bundle nor of what MLflow stored (``MLmodel``, manifests,
    environment files, input example, report) names the build machine's folders."""
    project = make_project("binary", months=4, rows=300)
    ingest_all(project, instance)
    assert run(project, train_job_name(project.spec.name), project.files[-1].stem, instance).success
    home = str(project.home.resolve())
    roots = [project.home / "bundles", project.settings.mlflow_artifacts_dir]
    files = [p for root in roots for p in root.rglob("*") if p.is_file()]
    names = {p.name for p in files}
    assert {"MLmodel", "manifest.json", "training_manifest.json"} <= names
    for path in files:
        if path.suffix in (".onnx", ".skops", ".safetensors", ".png"):
            continue
        text = path.read_bytes().decode("utf-8", errors="replace")
        assert home not in text and str(Path.home()) not in text, path
