"""Every candidate kind converts to ONNX with parity; bundles load in MLflow and our loader;
tampered bundles are refused; model files are skops with an explicit trusted-type list."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import skops.io as sio

from mlplatform.bundles import build
from mlplatform.bundles.format import BundleError, InputSchema, load
from mlplatform.spec import CLASSIFIERS, REGRESSORS, Candidate, ProjectSpec
from mlplatform.steps import ingest, sklearn_onnx, train_sklearn
from mlplatform.steps.features import build_features, layout
from mlplatform.steps.split import training_frame
from mlplatform_tests.projects import ProjectFactory

pytestmark = pytest.mark.training

SMALL = {
    "random_forest_classifier": {"n_estimators": 10, "max_depth": 5},
    "extra_trees_classifier": {"n_estimators": 10, "max_depth": 5},
    "random_forest_regressor": {"n_estimators": 10, "max_depth": 5},
    "extra_trees_regressor": {"n_estimators": 10, "max_depth": 5},
    "hist_gradient_boosting_classifier": {"max_iter": 20},
    "hist_gradient_boosting_regressor": {"max_iter": 20},
    "logistic_regression": {"max_iter": 300},
}


def frames(files: list[Path], spec: ProjectSpec) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(training features, holdout features, holdout raw cells)."""
    feats = {}
    for f in files:
        typed, report = ingest.parse_partition(ingest.read_landing_file(f, spec), spec, f)
        assert report.passed, report.problems
        feats[f.stem] = build_features(typed, spec)
    keys = sorted(feats)
    raw_holdout = ingest.read_landing_file(files[-1], spec)
    return training_frame({k: feats[k] for k in keys[:-1]}), feats[keys[-1]], raw_holdout


@pytest.mark.parametrize("task", ["multiclass", "regression", "binary"])
def test_every_estimator_converts_with_parity(make_project: ProjectFactory, task: str) -> None:
    project = make_project(task, months=3, rows=200)
    spec = project.spec
    train, holdout, _ = frames(project.files, spec)
    names = REGRESSORS if task == "regression" else CLASSIFIERS
    for name in names:
        cand = Candidate(name="c", estimator=name, params=SMALL.get(name, {}))
        pipeline = train_sklearn.fit_candidate(train, spec, cand)
        import onnxruntime as ort

        model = sklearn_onnx.pipeline_to_onnx(pipeline, spec)
        session = ort.InferenceSession(
            model.SerializeToString(), providers=["CPUExecutionProvider"]
        )
        expected = train_sklearn.SklearnModel(pipeline, spec).predict(holdout)
        got = build.onnx_predict(session, holdout, spec)
        assert build.parity_error(expected, got, spec) <= 1e-4, name


def test_skops_roundtrip_and_untrusted_refused(
    make_project: ProjectFactory, tmp_path: Path
) -> None:
    project = make_project("binary", months=2, rows=150)
    train, holdout, _ = frames(project.files, project.spec)
    for cand in project.spec.candidates:
        pipeline = train_sklearn.fit_candidate(train, project.spec, cand)
        path = tmp_path / f"{cand.name}.skops"
        train_sklearn.save_pipeline(pipeline, path)
        again = train_sklearn.load_pipeline(path)
        X = holdout[[n for n, _ in layout(project.spec)]]
        np.testing.assert_array_equal(pipeline.predict_proba(X), again.predict_proba(X))
    from sklearn.preprocessing import FunctionTransformer

    sio.dump(FunctionTransformer(np.log1p), tmp_path / "evil.skops")
    with pytest.raises(ValueError, match="untrusted"):
        train_sklearn.load_pipeline(tmp_path / "evil.skops")


@pytest.fixture
def published(make_project: ProjectFactory, tmp_path: Path) -> tuple[Path, object, pd.DataFrame]:
    project = make_project("binary", months=4, rows=250)
    spec = project.spec
    train, holdout, raw = frames(project.files, spec)
    pipeline = train_sklearn.fit_candidate(train, spec, spec.candidates[1])
    schema = InputSchema(dict(spec.columns), spec.features, spec.feature_columns, layout(spec))
    stage = build.write_bundle(
        tmp_path / "staging",
        sklearn_onnx.pipeline_to_onnx(pipeline, spec),
        spec,
        {
            "project": spec.name,
            "cutoff": "x",
            "input_schema": schema.to_json(),
            "classes": [str(c) for c in pipeline.classes_],
        },
    )
    audit = build.audit_bundle(stage, train_sklearn.SklearnModel(pipeline, spec), holdout, spec)
    assert audit["max_abs_diff"] <= 1e-4
    path = build.publish_bundle(stage, tmp_path / "bundles")
    assert not stage.exists() and path.parent.name == "bundles"
    expected = pipeline.predict_proba(holdout[[n for n, _ in layout(spec)]])
    return path, expected, raw


def test_bundle_is_pickle_free_and_content_addressed(published: tuple) -> None:
    path, _, _ = published
    manifest = json.loads((path / "manifest.json").read_text())
    assert path.name == manifest["bundle_id"]
    names = [p.name for p in path.rglob("*") if p.is_file()]
    assert not [n for n in names if n.endswith((".pkl", ".pickle", ".joblib", ".cloudpickle"))]
    assert "model.onnx" in names and "MLmodel" in names
    assert set(manifest["files"]) == {
        p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file()
    } - {"manifest.json"}


def test_stock_mlflow_and_our_loader_match_the_pipeline(published: tuple) -> None:
    import mlflow.pyfunc

    path, expected, raw = published
    ours = load(path)
    rows = ours.predict_rows(raw.to_dict("records"))
    ours_yes = np.array([r["probabilities"]["yes"] for r in rows])
    np.testing.assert_allclose(ours_yes, expected[:, 1], atol=1e-5)
    stock = mlflow.pyfunc.load_model(str(path / "model")).predict(raw)
    np.testing.assert_allclose(stock["proba_yes"].to_numpy(), expected[:, 1], atol=1e-5)
    assert list(stock["label"]) == [r["label"] for r in rows]


def test_stock_mlflow_runs_on_the_code_the_bundle_ships(published: tuple, tmp_path: Path) -> None:
    """In a fresh interpreter, stock MLflow predicts with the platform modules copied into the
    bundle (not the installed package), and loads neither dagster, sklearn nor torch."""
    path, expected, raw = published
    raw.to_csv(tmp_path / "raw.csv", index=False)
    code = (
        "import json, sys, mlflow.pyfunc, pandas as pd\n"
        f"model = mlflow.pyfunc.load_model({str(path / 'model')!r})\n"
        f"out = model.predict(pd.read_csv({str(tmp_path / 'raw.csv')!r}, dtype=str))\n"
        "print(json.dumps({'proba_yes': out['proba_yes'].tolist(), "
        "'modules': {m: sys.modules[m].__file__ for m in sys.modules "
        "if m.startswith('mlplatform')}, "
        "'heavy': [m for m in ('dagster', 'sklearn', 'torch') if m in sys.modules]}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    found = json.loads(result.stdout.strip().splitlines()[-1])
    shipped = str(path / "model" / "code" / "mlplatform")
    assert "mlplatform.bundles.format" in found["modules"]
    assert all(f.startswith(shipped) for f in found["modules"].values()), found["modules"]
    assert found["heavy"] == []
    np.testing.assert_allclose(found["proba_yes"], expected[:, 1], atol=1e-5)


def test_the_same_training_gives_the_same_bundle_id(
    make_project: ProjectFactory, tmp_path: Path
) -> None:
    """Two fits of the same candidate on the same data, exported apart in time: one bundle id,
    one published folder, and MLflow still loads it (no creation time or random uuid inside)."""
    import mlflow.pyfunc

    project = make_project("binary", months=3, rows=150)
    spec = project.spec
    train, _, raw = frames(project.files, spec)
    schema = InputSchema(dict(spec.columns), spec.features, spec.feature_columns, layout(spec))
    paths = []
    for attempt in range(2):
        pipeline = train_sklearn.fit_candidate(train, spec, spec.candidates[1])
        stage = build.write_bundle(
            tmp_path / f"staging{attempt}",
            sklearn_onnx.pipeline_to_onnx(pipeline, spec),
            spec,
            {
                "project": spec.name,
                "cutoff": "x",
                "input_schema": schema.to_json(),
                "classes": [str(c) for c in pipeline.classes_],
            },
        )
        paths.append(build.publish_bundle(stage, tmp_path / "bundles"))
    assert paths[0] == paths[1]
    assert [p.name for p in (tmp_path / "bundles").iterdir()] == [paths[0].name]
    manifest = json.loads((paths[0] / "manifest.json").read_text())
    assert "created_at" not in manifest
    assert len(mlflow.pyfunc.load_model(str(paths[0] / "model")).predict(raw)) == len(raw)


def test_flipped_byte_is_refused(published: tuple, tmp_path: Path) -> None:
    path, _, _ = published
    copy = tmp_path / "copy"
    shutil.copytree(path, copy)
    onnx_file = next(copy.rglob("model.onnx"))
    data = bytearray(onnx_file.read_bytes())
    data[len(data) // 2] ^= 0x01
    onnx_file.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="sha256 mismatch"):
        load(copy)


def test_edited_manifest_and_extra_file_are_refused(published: tuple, tmp_path: Path) -> None:
    path, _, _ = published
    copy = tmp_path / "copy"
    shutil.copytree(path, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["metrics"] = {"roc_auc": 0.99}
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="does not match its bundle id"):
        load(copy)
    shutil.rmtree(copy)
    shutil.copytree(path, copy)
    (copy / "model" / "extra.py").write_text("print('hi')")
    with pytest.raises(BundleError, match="not listed"):
        load(copy)


def test_forest_export_leaves_the_model_as_it_was(make_project: ProjectFactory) -> None:
    project = make_project("binary", months=2, rows=150)
    train, holdout, _ = frames(project.files, project.spec)
    cand = Candidate(name="f", estimator="random_forest_classifier", params={"n_estimators": 5})
    pipeline = train_sklearn.fit_candidate(train, project.spec, cand)
    before = pipeline.predict_proba(holdout[[n for n, _ in layout(project.spec)]])
    sklearn_onnx.pipeline_to_onnx(pipeline, project.spec)
    assert pipeline.named_steps["model"].bootstrap is True
    after = pipeline.predict_proba(holdout[[n for n, _ in layout(project.spec)]])
    np.testing.assert_array_equal(before, after)


def test_the_bundle_code_copy_imports_on_its_own(published: tuple) -> None:
    """The mlplatform modules a bundle ships (spec package included) import from the bundle
    alone: none of them reaches for a module that was not copied."""
    path, _, _ = published
    (entry,) = path.rglob("bundles/format.py")
    root = entry.parents[2]
    code = (
        "import sys\n"
        f"sys.path.insert(0, {str(root)!r})\n"
        "import mlplatform.bundles.format\n"
        "mine = [m.__file__ for n, m in sys.modules.items() if n.startswith('mlplatform')]\n"
        f"print([f for f in mine if not f.startswith({str(root)!r})])\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
