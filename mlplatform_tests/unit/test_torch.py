"""The torch MLP candidate: deterministic training, early stopping on the end of the window,
safetensors + JSON storage, and one ONNX graph with parity that bundles like an sklearn model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest

from mlplatform.bundles import build
from mlplatform.bundles.format import InputSchema
from mlplatform.columns import MISSING_CATEGORY
from mlplatform.spec import Candidate, ProjectSpec, Training
from mlplatform.steps import candidates, torch_model, train_torch
from mlplatform.steps.features import layout
from mlplatform.steps.model_types import EpochLog
from mlplatform_tests.projects import Project, ProjectFactory, example_dict
from mlplatform_tests.unit.test_export_bundle import frames

pytestmark = pytest.mark.training

REPO = Path(__file__).resolve().parents[2]
SMALL = {"hidden_layers": [16, 8], "max_epochs": 6, "patience": 3, "batch_size": 64}


def mlp(**params: object) -> Candidate:
    return Candidate(name="mlp", kind="torch", params={**SMALL, **params})


def with_seed(spec: ProjectSpec, seed: int) -> ProjectSpec:
    training = Training(**{**spec.training.model_dump(), "seed": seed})
    return spec.model_copy(update={"training": training})


@pytest.fixture
def binary(make_project: ProjectFactory) -> tuple[Project, pd.DataFrame, pd.DataFrame]:
    project = make_project("binary", months=3, rows=200)
    train, holdout, _ = frames(project.files, project.spec)
    return project, train, holdout


# ---------------------------------------------------------------------------- determinism

FIT_IN_SUBPROCESS = """
import sys
from pathlib import Path
import pandas as pd
from mlplatform.spec import Candidate, load_spec
from mlplatform.steps import train_torch
spec = load_spec(Path(sys.argv[1]))
train = pd.read_parquet(sys.argv[2])
cand = Candidate.model_validate_json(sys.argv[3])
train_torch.fit_torch(train, spec, cand).save(Path(sys.argv[4]))
"""


def test_same_seed_gives_identical_weight_bytes(binary: tuple, tmp_path: Path) -> None:
    project, train, _ = binary
    spec, cand = project.spec, mlp()
    first, second, other = (tmp_path / f"{n}.safetensors" for n in ("a", "b", "c"))
    train_torch.fit_torch(train, spec, cand).save(first)
    train_torch.fit_torch(train, spec, cand).save(second)
    assert first.read_bytes() == second.read_bytes()
    train.to_parquet(tmp_path / "train.parquet")
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "train.parquet"), train)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    args = [str(spec.source_file), str(tmp_path / "train.parquet"), cand.model_dump_json()]
    args.append(str(other))
    subprocess.run([sys.executable, "-c", FIT_IN_SUBPROCESS, *args], check=True, cwd=REPO, env=env)
    assert other.read_bytes() == first.read_bytes()


def test_another_seed_gives_other_weights(binary: tuple, tmp_path: Path) -> None:
    project, train, _ = binary
    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    train_torch.fit_torch(train, project.spec, mlp(max_epochs=2)).save(a)
    train_torch.fit_torch(train, with_seed(project.spec, 99), mlp(max_epochs=2)).save(b)
    assert a.read_bytes() != b.read_bytes()


def test_fit_leaves_global_torch_state_alone(binary: tuple) -> None:
    import torch

    project, train, _ = binary
    threads = torch.get_num_threads()
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    train_torch.fit_torch(train, project.spec, mlp(max_epochs=1))
    assert torch.equal(torch.rand(3), expected)
    assert torch.get_num_threads() == threads
    assert not torch.are_deterministic_algorithms_enabled()


# ---------------------------------------------------------------------------- training


def test_validation_slice_is_the_end_of_the_window() -> None:
    fit, val = train_torch.validation_split(100, 0.1)
    assert (fit, val) == (slice(0, 90), slice(90, 100))
    assert train_torch.validation_split(3, 0.4) == (slice(0, 2), slice(2, 3))
    assert train_torch.validation_split(2, 0.01) == (slice(0, 1), slice(1, 2))
    with pytest.raises(ValueError, match="too few"):
        train_torch.validation_split(1, 0.1)


def test_early_stopping_keeps_the_best_epoch_scored_on_the_last_rows(
    make_project: ProjectFactory,
) -> None:
    """An over-fitting regression stops early; the kept weights are the best epoch's, and that
    epoch's validation metrics are those of the model on the last rows of the window."""
    project = make_project("regression", months=3, rows=150)
    spec = project.spec
    train, _, _ = frames(project.files, spec)
    seen: list[EpochLog] = []
    cand = mlp(
        hidden_layers=[256, 256],
        learning_rate=0.05,
        max_epochs=60,
        patience=2,
        batch_size=16,
        dropout=0.0,
        validation_fraction=0.2,
    )
    model = train_torch.fit_torch(train, spec, cand, on_epoch=seen.append)
    assert [e.epoch for e in model.history] == list(range(1, len(model.history) + 1))
    assert seen == model.history
    assert len(model.history) < 60
    assert len(model.history) - model.best_epoch == 2
    losses = [e.val_loss for e in model.history]
    assert min(losses) == losses[model.best_epoch - 1] < losses[-1]
    assert all(e.seconds > 0 and e.train_loss > 0 for e in model.history)
    n_val = round(len(train) * 0.2)
    last, first = train.iloc[-n_val:], train.iloc[:n_val]
    best = model.history[model.best_epoch - 1].val_metrics
    assert set(best) == {"rmse", "mae", "r2"}

    def rmse(rows: pd.DataFrame) -> float:
        y = rows[spec.target].to_numpy(np.float64)
        return float(np.sqrt(np.mean((model.predict(rows) - y) ** 2)))

    assert best["rmse"] == pytest.approx(rmse(last), rel=1e-4)
    assert best["rmse"] != pytest.approx(rmse(first), rel=1e-2)


def test_on_epoch_errors_propagate_and_metrics_cover_the_task(binary: tuple) -> None:
    project, train, _ = binary

    class PrunedError(Exception):
        pass

    def stop(log: EpochLog) -> None:
        assert set(log.val_metrics) == {
            "roc_auc", "pr_auc", "log_loss", "accuracy", "balanced_accuracy", "f1",
        }  # fmt: skip
        raise PrunedError

    with pytest.raises(PrunedError):
        candidates.fit(train, project.spec, mlp(), on_epoch=stop)


def test_balanced_class_weights() -> None:
    weights = train_torch.balanced_class_weights(np.array([0, 0, 0, 1]), 2)
    np.testing.assert_allclose(weights, [4 / (2 * 3), 4 / (2 * 1)])
    # a class without rows gets no weight and does not count in k
    np.testing.assert_allclose(
        train_torch.balanced_class_weights(np.array([0, 2, 2]), 3), [1.5, 0, 0.75]
    )


def test_class_weights_change_the_loss(binary: tuple) -> None:
    project, train, _ = binary
    balanced = train_torch.fit_torch(train, project.spec, mlp(max_epochs=1))
    plain = train_torch.fit_torch(train, project.spec, mlp(max_epochs=1, class_weights="none"))
    assert balanced.history[0].val_loss != pytest.approx(plain.history[0].val_loss, rel=1e-3)


def test_device_auto_is_cpu_without_a_gpu() -> None:
    import torch

    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert train_torch.resolve_device("auto").type == expected
    assert train_torch.resolve_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU"):
            train_torch.resolve_device("cuda")


def test_single_class_window_is_refused(binary: tuple) -> None:
    project, train, _ = binary
    one = train.assign(**{project.spec.target: "no"})
    with pytest.raises(ValueError, match="single class"):
        train_torch.fit_torch(one, project.spec, mlp())


# ---------------------------------------------------------------------------- storage


def test_save_load_roundtrip(binary: tuple, tmp_path: Path) -> None:
    project, train, holdout = binary
    spec, cand = project.spec, mlp()
    model = candidates.fit(train, spec, cand)
    path = tmp_path / "models" / f"2023-03-01{candidates.model_suffix(cand)}"
    model.save(path)
    assert sorted(p.name for p in path.parent.iterdir()) == [
        "2023-03-01.safetensors",
        "2023-03-01.torch.json",
    ]
    again = candidates.load(path, spec, cand)
    np.testing.assert_array_equal(again.predict(holdout), model.predict(holdout))
    assert again.classes == model.classes == ["no", "yes"]
    assert again.history == model.history
    meta = json.loads(path.with_suffix(".torch.json").read_text())
    assert meta["best_epoch"] == model.best_epoch  # type: ignore[attr-defined]
    assert meta["preprocessing"]["vocabularies"]


def test_load_refuses_tampered_or_mismatched_files(
    binary: tuple, tmp_path: Path, make_project: ProjectFactory
) -> None:
    project, train, _ = binary
    path = tmp_path / "m.safetensors"
    train_torch.fit_torch(train, project.spec, mlp(max_epochs=1)).save(path)
    meta_path = path.with_suffix(".torch.json")
    good_weights, good_meta = path.read_bytes(), meta_path.read_text()

    flipped = bytearray(good_weights)
    flipped[-3] ^= 0x01
    path.write_bytes(bytes(flipped))
    with pytest.raises(ValueError, match=r"m\.safetensors: sha256 does not match"):
        torch_model.load_torch(path, project.spec)
    path.write_bytes(good_weights)

    meta = json.loads(good_meta)
    meta["architecture"]["hidden_layers"] = [32, 8]
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"m\.safetensors: weights do not fit.*layers\.0\.weight"):
        torch_model.load_torch(path, project.spec)

    del meta["preprocessing"]
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"m\.torch\.json: malformed"):
        torch_model.load_torch(path, project.spec)

    meta_path.write_text(good_meta)
    other = make_project("regression", months=1, rows=50, name="other").spec
    with pytest.raises(ValueError, match=r"m\.torch\.json: trained for task 'binary'"):
        torch_model.load_torch(path, other)


# ---------------------------------------------------------------------------- ONNX


def awkward(holdout: pd.DataFrame, spec: ProjectSpec) -> pd.DataFrame:
    """The holdout with NaNs, unseen and missing category values sprinkled in."""
    out = holdout.copy()
    rng = np.random.default_rng(0)
    for name, kind in layout(spec):
        rows = rng.choice(len(out), size=max(1, len(out) // 10), replace=False)
        col = out.columns.get_loc(name)
        if kind == "numeric":
            out.iloc[rows, col] = np.nan
        else:
            out.iloc[rows[::2], col] = "never-seen-before"
            out.iloc[rows[1::2], col] = MISSING_CATEGORY
    return out


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_onnx_graph_matches_the_network(make_project: ProjectFactory, task: str) -> None:
    project = make_project(task, months=3, rows=150)
    spec = project.spec
    train, holdout, _ = frames(project.files, spec)
    model = train_torch.fit_torch(train, spec, mlp(max_epochs=3))
    graph = model.to_onnx()
    assert [(i.name, i.type.tensor_type.elem_type) for i in graph.graph.input] == [
        (n, 1 if kind == "numeric" else 8) for n, kind in layout(spec)
    ]
    session = ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
    rows = awkward(holdout, spec)
    expected = model.predict(rows)
    got = build.onnx_predict(session, rows, spec)
    assert np.isfinite(expected).all()
    assert build.parity_error(expected, got, spec) <= 1e-4
    outputs = session.run(
        None, build.onnx_inputs({n: rows[n] for n, _ in layout(spec)}, layout(spec))
    )
    if task == "regression":
        assert [o.name for o in session.get_outputs()] == ["variable"]
        assert outputs[0].shape == (len(rows), 1) and outputs[0].dtype == np.float32
    else:
        assert [o.name for o in session.get_outputs()] == ["label", "probabilities"]
        assert (
            outputs[1].shape == (len(rows), len(model.classes)) and outputs[1].dtype == np.float32
        )
        labels = np.asarray(model.classes, dtype=object)[expected.argmax(axis=1)]
        assert list(outputs[0]) == list(labels)


def test_bundle_loads_with_stock_mlflow(binary: tuple, tmp_path: Path) -> None:
    import mlflow.pyfunc

    project, _, _ = binary
    spec = project.spec
    train, holdout, raw = frames(project.files, spec)
    model = train_torch.fit_torch(train, spec, mlp(max_epochs=3))
    schema = InputSchema(dict(spec.columns), spec.features, spec.feature_columns, layout(spec))
    manifest = {
        "project": spec.name,
        "cutoff": "x",
        "input_schema": schema.to_json(),
        "classes": model.classes,
    }
    stage = build.write_bundle(tmp_path / "staging", model.to_onnx(), spec, manifest)
    expected = model.predict(holdout)
    onnx_file = next(stage.rglob("model.onnx"))
    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    assert build.parity_error(expected, build.onnx_predict(session, holdout, spec), spec) <= 1e-4
    stock = mlflow.pyfunc.load_model(str(stage / "model")).predict(raw)
    np.testing.assert_allclose(stock["proba_yes"].to_numpy(), expected[:, 1], atol=1e-5)
    assert list(stock["label"]) == list(np.array(["no", "yes"])[expected.argmax(axis=1)])


@pytest.mark.parametrize(
    "dropped",
    [
        ["tenure_months", "monthly_charges", "support_calls", "autopay", "signup_date"],
        ["plan", "region", "payment_method"],
    ],
    ids=["categories-only", "numerics-only"],
)
def test_onnx_graph_with_one_kind_of_feature(
    make_project: ProjectFactory, dropped: list[str]
) -> None:
    features = example_dict()["features"]
    features["exclude"] = [*features["exclude"], *dropped]
    project = make_project("binary", months=2, rows=150, features=features)
    spec = project.spec
    assert {kind for _, kind in layout(spec)} == (
        {"numeric"} if "plan" in dropped else {"category"}
    )
    train, holdout, _ = frames(project.files, spec)
    model = train_torch.fit_torch(train, spec, mlp(max_epochs=2))
    session = ort.InferenceSession(
        model.to_onnx().SerializeToString(), providers=["CPUExecutionProvider"]
    )
    rows = awkward(holdout, spec)
    assert (
        build.parity_error(model.predict(rows), build.onnx_predict(session, rows, spec), spec)
        <= 1e-4
    )
