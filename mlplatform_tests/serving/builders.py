"""Real bundles for the serving tests, built with the platform's pure steps (no Dagster)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from mlplatform.bundles import build as bundle_build
from mlplatform.bundles.format import InputSchema
from mlplatform.examples.generate import generate_example
from mlplatform.spec import Candidate, ProjectSpec, load_spec
from mlplatform.steps import evaluate, ingest, sklearn_onnx, train_sklearn
from mlplatform.steps.features import build_features, layout
from mlplatform.steps.gates import gate_results
from mlplatform.steps.split import training_frame, training_manifest
from mlplatform_tests.projects import variant

PROJECT = "shop"
OTHER_PROJECT = "other"


@dataclass
class Built:
    """A projects folder with two specs and published bundles of project ``shop``."""

    projects_dir: Path
    bundles_dir: Path
    bundles: dict[str, str]  # "a", "b", "c" -> bundle id (all of project shop)
    rows: list[dict[str, Any]]  # raw holdout rows exactly as they land (strings)


def _publish(
    spec: ProjectSpec,
    candidate: Candidate,
    train: pd.DataFrame,
    holdout: pd.DataFrame,
    cutoff: str,
    staging: Path,
    bundles_dir: Path,
) -> str:
    pipeline = train_sklearn.fit_candidate(train, spec, candidate)
    proba = train_sklearn.SklearnModel(pipeline, spec).predict(holdout)
    classes = [str(c) for c in pipeline.classes_]
    pred = evaluate.Prediction(classes=classes, proba=proba)
    y = holdout[spec.target].to_numpy(dtype=object)
    metrics = evaluate.score(y, pred, spec.task)
    gates = [asdict(g) for g in gate_results(metrics, spec)]
    schema = InputSchema(dict(spec.columns), spec.features, spec.feature_columns, layout(spec))
    stage = bundle_build.write_bundle(
        staging,
        sklearn_onnx.pipeline_to_onnx(pipeline, spec),
        spec,
        {
            "format": 1,
            "project": spec.name,
            "task": spec.task,
            "target": spec.target,
            "cutoff": cutoff,
            "candidate": candidate.name,
            "training_manifest": training_manifest({cutoff: train}, {}),
            "metrics": metrics,
            "gates": gates,
            "primary_metric": spec.evaluation.primary_metric,
            "input_schema": schema.to_json(),
            "classes": classes,
        },
    )
    audit = bundle_build.audit_bundle(
        stage, train_sklearn.SklearnModel(pipeline, spec), holdout, spec
    )
    assert audit["parity_error"] <= 1e-4
    return bundle_build.publish_bundle(stage, bundles_dir).name


def build(root: Path) -> Built:
    """Specs for ``shop`` and ``other`` and three published bundles of ``shop``."""
    projects = root / "projects"
    projects.mkdir(parents=True)
    for name in (PROJECT, OTHER_PROJECT):
        data = variant("binary", name)
        (projects / f"{name}.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    spec = load_spec(projects / f"{PROJECT}.yaml")
    files = generate_example(root / "landing", months=4, rows_per_month=250, seed=11)
    feats = {}
    for f in files:
        typed, report = ingest.parse_partition(ingest.read_landing_file(f, spec), spec, f)
        assert report.passed, report.problems
        feats[f.stem] = build_features(typed, spec)
    keys = sorted(feats)
    train = training_frame({k: feats[k] for k in keys[:-1]})
    holdout = feats[keys[-1]]
    raw = ingest.read_landing_file(files[-1], spec)
    bundles_dir = root / "bundles"
    staging = root / "staging"
    cands = {
        "a": spec.candidates[0],
        "b": spec.candidates[1],
        "c": Candidate(name="tiny", estimator="logistic_regression", params={"C": 0.01}),
    }
    ids = {
        key: _publish(spec, cand, train, holdout, keys[-1], staging, bundles_dir)
        for key, cand in cands.items()
    }
    assert len(set(ids.values())) == 3
    rows = raw.replace({np.nan: None}).to_dict("records")
    return Built(projects, bundles_dir, ids, rows)
