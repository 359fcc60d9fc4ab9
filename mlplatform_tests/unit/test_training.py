"""Training one candidate (steps/training.py) against a real MLflow tracking store."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlplatform.resources.mlflow import MlflowTracking
from mlplatform.spec import Candidate
from mlplatform.steps import ingest, split, training
from mlplatform.steps.features import build_features
from mlplatform_tests.projects import ProjectFactory

pytestmark = pytest.mark.training


def test_train_candidate_saves_the_model_and_records_the_run(
    make_project: ProjectFactory, tmp_path: Path
) -> None:
    project = make_project("binary", months=3, rows=150)
    spec = project.spec
    window = {}
    for f in project.files[:-1]:
        typed, _ = ingest.parse_partition(ingest.read_landing_file(f, spec), spec, f)
        window[f.stem] = build_features(typed, spec)
    train = split.training_frame(window)
    manifest = split.training_manifest(window, {k: "sha" for k in window})
    tracker = MlflowTracking(
        tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}", artifact_root=str(tmp_path / "art")
    )
    cutoff = project.files[-1].stem
    cand = Candidate(name="logreg", estimator="logistic_regression", params={"max_iter": 300})
    path = tmp_path / "models" / f"{cutoff}.skops"
    path.parent.mkdir()
    lines: list[str] = []
    result = training.train_candidate(
        train,
        spec,
        cand,
        cutoff,
        path,
        manifest,
        tracker,
        provenance={"dagster_run_id": "r1"},
        log=lines.append,
    )
    assert path.is_file() and result.path == path
    assert result.manifest["candidate"] == "logreg" and result.manifest["cutoff"] == cutoff
    assert result.manifest["dagster_run_id"] == "r1"
    assert result.manifest["partitions"] == manifest["partitions"]
    assert result.manifest["mlflow_run_id"] == result.run_id
    assert result.fitted.predict(train.drop(columns=[spec.target])).shape == (len(train), 2)
    run = tracker.client.get_run(result.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["estimator"] == "logistic_regression"
    assert run.data.params["cutoff"] == cutoff and run.data.params["max_iter"] == "300"
    assert run.data.metrics["train_rows"] == len(train)
    assert lines == []  # a one-shot fit logs no epochs

    broken = Candidate(name="bad", estimator="logistic_regression", params={"C": -1.0})
    bad_path = path.with_name(f"{cutoff}.bad.skops")
    with pytest.raises(ValueError, match="C"):
        training.train_candidate(train, spec, broken, cutoff, bad_path, manifest, tracker)
    assert not bad_path.exists()
    runs = tracker.client.search_runs(
        [tracker.experiment_id(spec.name)], filter_string="tags.`mlplatform.candidate` = 'bad'"
    )
    assert [r.info.status for r in runs] == ["FAILED"]


def test_max_rows_samples_each_partition_its_share_deterministically() -> None:
    """training.max_rows: a seeded sample stratified by partition, rows kept in order, and
    what was sampled is recorded for the training manifest."""
    import numpy as np
    import pandas as pd

    from mlplatform.steps.split import sampled_window

    sizes = {"2024-01-01": 1000, "2024-02-01": 3000, "2024-03-01": 6001}
    window = {
        k: pd.DataFrame({"x": np.arange(n, dtype=np.float64) + 10_000 * i})
        for i, (k, n) in enumerate(sizes.items())
    }
    for frame in window.values():
        frame.attrs = {"raw_sha256": "abc"}
    sampled, sample = sampled_window(window, 1000, seed=7)
    assert sample is not None
    assert sample["rows"] == {"2024-01-01": 100, "2024-02-01": 300, "2024-03-01": 600}
    assert sample["window_rows"] == 10_001 and sample["max_rows"] == 1000 and sample["seed"] == 7
    assert sum(len(f) for f in sampled.values()) == 1000
    for key, frame in sampled.items():
        x = frame["x"].to_numpy()
        assert len(x) == sample["rows"][key]  # type: ignore[index]
        assert (np.diff(x) > 0).all()  # original order, no repeats
        assert set(x) <= set(window[key]["x"])
        assert frame.attrs == {"raw_sha256": "abc"}
    again, _ = sampled_window(window, 1000, seed=7)
    assert all(again[k].equals(sampled[k]) for k in sizes)
    other, _ = sampled_window(window, 1000, seed=8)
    assert not other["2024-03-01"].equals(sampled["2024-03-01"])
    whole, none = sampled_window(window, 10_001, seed=7)
    assert none is None and all(whole[k] is window[k] for k in sizes)
