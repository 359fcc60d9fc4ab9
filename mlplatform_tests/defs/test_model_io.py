"""Trained candidates flow between assets as values: the model IO manager stores each one in
its safe format beside its training manifest and hands it to the evaluation as an input."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import numpy as np
import pytest

from mlplatform.defs.evaluation import evaluation_asset, model_input
from mlplatform.defs.models import model_key
from mlplatform.resources.model_io import ModelIOManager
from mlplatform.steps import candidates
from mlplatform.steps.model_types import TrainedModel
from mlplatform_tests.projects import ProjectFactory
from mlplatform_tests.unit.test_search import train_frame


def test_model_io_stores_and_loads_a_trained_candidate(
    make_project: ProjectFactory, tmp_path: Path
) -> None:
    project = make_project("binary", months=3, rows=200)
    spec = project.spec
    cand = spec.candidates[0]
    frame = train_frame(project)
    fitted = candidates.fit(frame, spec, cand)
    manifest = {"candidate": cand.name, "cutoff": "2023-03-01", "mlflow_run_id": "r1"}
    io = ModelIOManager(home=str(tmp_path), specs=[spec])
    key = model_key(spec, cand.name)

    out = dg.build_output_context(asset_key=key, partition_key="2023-03-01")
    io.handle_output(out, TrainedModel(fitted, manifest))
    folder = tmp_path / "models" / spec.name / cand.name
    assert sorted(p.name for p in folder.iterdir()) == ["2023-03-01.json", "2023-03-01.skops"]
    assert json.loads((folder / "2023-03-01.json").read_text()) == manifest

    loaded = io.load_input(dg.build_input_context(asset_key=key, partition_key="2023-03-01"))
    assert loaded.manifest == manifest and loaded.fitted.classes == fitted.classes
    np.testing.assert_allclose(loaded.fitted.predict(frame), fitted.predict(frame))

    missing = dg.build_input_context(asset_key=key, partition_key="2023-02-01")
    with pytest.raises(FileNotFoundError, match=f"{spec.name}/model/{cand.name} partition"):
        io.load_input(missing)


def test_evaluation_receives_every_candidate_as_an_input(make_project: ProjectFactory) -> None:
    spec = make_project("binary", months=3, rows=100).spec
    asset = evaluation_asset(spec)
    by_input = asset.keys_by_input_name
    for cand in spec.candidates:
        assert by_input[model_input(cand.name)] == model_key(spec, cand.name)
    # the same upstream set as before: features and every model
    assert set(by_input.values()) == {
        dg.AssetKey([spec.name, "features"]),
        *(model_key(spec, c.name) for c in spec.candidates),
    }
