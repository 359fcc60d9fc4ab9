"""The whole asset graph materialized in-process on small generated data."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from mlplatform.bundles.format import load
from mlplatform.defs import bundles as bundle_defs
from mlplatform.defs.build import build_defs, data_job_name, train_job_name
from mlplatform.digests import file_sha256
from mlplatform_tests.projects import Project, ProjectFactory


def run(
    project: Project, job: str, key: str, instance: dg.DagsterInstance
) -> dg.ExecuteInProcessResult:
    defs = build_defs(project.settings, [project.spec])
    return defs.resolve_job_def(job).execute_in_process(
        partition_key=key, instance=instance, raise_on_error=False
    )


def ingest_all(project: Project, instance: dg.DagsterInstance) -> None:
    for f in project.files:
        assert run(project, data_job_name(project.spec.name), f.stem, instance).success, f


def checks(result: dg.ExecuteInProcessResult) -> dict[str, bool]:
    out = {}
    for event in result.all_events:
        if event.event_type_value == "ASSET_CHECK_EVALUATION":
            data = event.event_specific_data
            out[f"{data.asset_key.to_user_string()}:{data.check_name}"] = data.passed
    return out


def materialized(result: dg.ExecuteInProcessResult) -> set[str]:
    return {
        e.event_specific_data.materialization.asset_key.to_user_string()
        for e in result.all_events
        if e.event_type_value == "ASSET_MATERIALIZATION"
    }


def tree_digest(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_binary_graph_end_to_end(
    make_project: ProjectFactory, instance: dg.DagsterInstance
) -> None:
    project = make_project("binary", months=5, rows=300)
    ingest_all(project, instance)
    cutoff = project.files[-1].stem
    result = run(project, train_job_name(project.spec.name), cutoff, instance)
    assert result.success
    p = project.spec.name
    assert materialized(result) == {
        f"{p}/model/logreg",
        f"{p}/model/forest",
        f"{p}/evaluation",
        f"{p}/bundle",
    }
    assert all(checks(result).values()) and f"{p}/bundle:parity" in checks(result)

    bundle_dirs = list((project.home / "bundles").iterdir())
    assert len(bundle_dirs) == 1
    manifest = json.loads((bundle_dirs[0] / "manifest.json").read_text())
    training = manifest["training_manifest"]
    window = [f.stem for f in project.files[1:4]]
    assert training["partitions"] == window  # exactly the 3 partitions before the cutoff
    assert training["data_versions"] == {f.stem: file_sha256(f) for f in project.files[1:4]}
    assert manifest["cutoff"] == cutoff and manifest["candidate"] in ("logreg", "forest")
    assert set(manifest["metrics"]) >= {"roc_auc", "log_loss", "pr_auc"}

    report = project.home / "reports" / p / f"{cutoff}.html"
    assert report.is_file() and "logreg" in report.read_text()
    rows = load(bundle_dirs[0]).predict_rows([{"tenure_months": "3", "plan": "basic"}])
    assert set(rows[0]["probabilities"]) == {"no", "yes"}

    from mlflow.tracking import MlflowClient

    client = MlflowClient(project.settings.tracking_uri, project.settings.tracking_uri)
    version = client.get_model_version(p, "1")
    assert version.tags["bundle_id"] == manifest["bundle_id"]
    runs = client.search_runs([client.get_experiment_by_name(p).experiment_id])
    assert {r.data.tags.get("mlplatform.candidate") for r in runs} >= {"logreg", "forest"}
    trained_by = version.tags["mlplatform.mlflow_run_id"]
    assert client.get_run(trained_by).data.tags.get("mlplatform.cutoff", cutoff) == cutoff

    # the same training again (same inputs, code, params): the same bundle, no duplicate
    # candidate, no second registered version
    again = run(project, train_job_name(p), cutoff, instance)
    assert again.success and f"{p}/bundle" in materialized(again)
    assert [d.name for d in (project.home / "bundles").iterdir()] == [manifest["bundle_id"]]
    assert [str(v.version) for v in client.search_model_versions(f"name = '{p}'")] == ["1"]


@pytest.mark.parametrize("task", ["multiclass", "regression"])
def test_other_tasks_graph(
    make_project: ProjectFactory, task: str, instance: dg.DagsterInstance
) -> None:
    project = make_project(task, months=4, rows=300)
    ingest_all(project, instance)
    result = run(project, train_job_name(project.spec.name), project.files[-1].stem, instance)
    assert result.success, [e.message for e in result.all_events if "FAIL" in e.event_type_value]
    (bundle_dir,) = (project.home / "bundles").iterdir()
    bundle = load(bundle_dir)
    out = bundle.predict_rows([{"tenure_months": 12, "monthly_charges": 80.0, "plan": "premium"}])
    if task == "multiclass":
        assert set(out[0]["probabilities"]) == {"budget", "mainstream", "premium"}
    else:
        assert out[0]["value"] == pytest.approx(out[0]["value"]) and "value" in out[0]


def test_bad_partition_blocks_downstream_and_keeps_what_is_stored(
    make_project: ProjectFactory, instance: dg.DagsterInstance
) -> None:
    project = make_project("binary", months=5, rows=300)
    p = project.spec.name
    for f in project.files[:4]:
        assert run(project, data_job_name(p), f.stem, instance).success
    assets_before = tree_digest(project.home / "assets")

    new_month = project.files[4]
    lines = new_month.read_text().splitlines()
    header = lines[0].split(",")
    target_at = header.index("churned")
    broken = [lines[0]]
    for line in lines[1:]:
        cells = line.split(",")
        cells[target_at] = ""
        broken.append(",".join(cells))
    new_month.write_text("\n".join(broken) + "\n")
    result = run(project, data_job_name(p), new_month.stem, instance)
    assert not result.success
    assert checks(result)[f"{p}/raw:target"] is False
    assert materialized(result) == set()
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "churned" in str(failure.event_specific_data.error) and "line 2" in str(
        failure.event_specific_data.error
    )

    # the same bad content re-landed over an already stored partition changes nothing stored
    project.files[1].write_text(new_month.read_text())
    assert not run(project, data_job_name(p), project.files[1].stem, instance).success
    assert tree_digest(project.home / "assets") == assets_before

    result = run(project, train_job_name(p), new_month.stem, instance)
    assert not result.success  # models may train on the window; the holdout is missing
    assert not materialized(result) & {f"{p}/evaluation", f"{p}/bundle"}
    assert not (project.home / "bundles").exists()


def test_failed_parity_publishes_nothing(
    make_project: ProjectFactory, monkeypatch: pytest.MonkeyPatch, instance: dg.DagsterInstance
) -> None:
    project = make_project("binary", months=4, rows=300)
    ingest_all(project, instance)
    monkeypatch.setattr(bundle_defs, "PARITY_TOLERANCE", -1.0)
    result = run(project, train_job_name(project.spec.name), project.files[-1].stem, instance)
    assert not result.success
    assert checks(result)[f"{project.spec.name}/bundle:parity"] is False
    assert f"{project.spec.name}/bundle" not in materialized(result)
    assert not (project.home / "bundles").exists()
    assert list((project.home / "staging").iterdir()) == []


def test_failed_gate_blocks_the_bundle(
    make_project: ProjectFactory, instance: dg.DagsterInstance
) -> None:
    project = make_project(
        "binary",
        months=4,
        rows=300,
        evaluation={"primary_metric": "roc_auc", "gates": [{"metric": "roc_auc", "min": 0.999}]},
    )
    ingest_all(project, instance)
    result = run(project, train_job_name(project.spec.name), project.files[-1].stem, instance)
    p = project.spec.name
    assert not result.success
    assert checks(result)[f"{p}/evaluation:gates"] is False
    assert f"{p}/evaluation" in materialized(result)
    assert f"{p}/bundle" not in materialized(result)
    assert (project.home / "reports" / p / f"{project.files[-1].stem}.html").is_file()


def test_a_data_run_passes_raw_to_features_without_reading_it_back(
    make_project: ProjectFactory, instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    """raw's frame goes to features (and features' to the drift check) in memory; what is
    stored equals what features build from the raw file read back, as a run that reads it
    (features alone, another process) does."""
    import mlplatform.resources.store as store
    from mlplatform.defs.features import used_columns
    from mlplatform.steps.features import build_features

    project = make_project("binary", months=2, rows=300)
    key = project.files[-1].stem
    p = project.spec.name
    raw_file = store.partition_path(str(project.settings.assets_dir), dg.AssetKey([p, "raw"]), key)
    features_file = store.partition_path(
        str(project.settings.assets_dir), dg.AssetKey([p, "features"]), key
    )
    read: list[str] = []
    reader = store.read_parquet

    def counted(path: object, columns: list[str] | None = None) -> object:
        read.append(str(path))
        return reader(path, columns)  # type: ignore[arg-type]

    monkeypatch.setattr(store, "read_parquet", counted)
    result = run(project, data_job_name(p), key, instance)
    assert result.success and all(checks(result).values())
    assert {f"{p}/raw", f"{p}/features"} <= materialized(result)
    assert str(raw_file) not in read and str(features_file) not in read

    again = features_file.with_name("again.parquet")
    rebuilt = build_features(reader(raw_file, used_columns(project.spec)), project.spec)
    store.write_parquet(rebuilt, again)
    pd.testing.assert_frame_equal(reader(features_file), reader(again))
