"""Trained candidates as asset values: a Dagster IO manager that stores each ``TrainedModel``
in its safe format (skops with explicit trusted types, or safetensors + JSON; never pickle)
beside its training manifest, and loads it back for the evaluation and the bundle."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg

from mlplatform.spec import Candidate, ProjectSpec

if TYPE_CHECKING:  # sklearn, torch: imported by the run that trains or loads
    from mlplatform.steps.model_types import TrainedModel


def model_path(home: Path, spec: ProjectSpec, candidate: Candidate, cutoff: str) -> Path:
    """Where a candidate's model of ``cutoff`` is stored (its manifest: ``.json`` beside)."""
    from mlplatform.steps.candidates import model_suffix

    name = f"{cutoff}{model_suffix(candidate)}"
    return home / "models" / spec.name / candidate.name / name


def load_trained(home: Path, spec: ProjectSpec, candidate: Candidate, cutoff: str) -> TrainedModel:
    """A stored candidate of ``cutoff``; fails naming the asset when it is not stored."""
    from mlplatform.steps import candidates
    from mlplatform.steps.model_types import TrainedModel

    path = model_path(home, spec, candidate, cutoff)
    manifest = path.with_suffix(".json")
    if not (path.is_file() and manifest.is_file()):
        raise FileNotFoundError(
            f"{spec.name}/model/{candidate.name} partition {cutoff} is not materialized "
            f"({path}): materialize it first"
        )
    fitted = candidates.load(path, spec, candidate)
    return TrainedModel(fitted, json.loads(manifest.read_text(encoding="utf-8")))


class ModelIOManager(dg.IOManager):
    """``<project>/model/<candidate>`` partitions as
    ``<home>/models/<project>/<candidate>/<cutoff>.<skops|safetensors>`` and ``<cutoff>.json``
    (the training manifest), each written atomically, the model first."""

    def __init__(self, home: str, specs: Sequence[ProjectSpec]) -> None:
        self.home = Path(home)
        self.specs = {spec.name: spec for spec in specs}

    def candidate(self, key: dg.AssetKey) -> tuple[ProjectSpec, Candidate]:
        """The project and candidate of a model asset key ``<project>/model/<candidate>``."""
        project, _, name = key.path
        spec = self.specs[project]
        return spec, next(c for c in spec.candidates if c.name == name)

    def handle_output(self, context: dg.OutputContext, obj: TrainedModel) -> None:
        spec, cand = self.candidate(context.asset_key)
        path = model_path(self.home, spec, cand, context.asset_partition_key)
        obj.fitted.save(path)
        manifest = path.with_suffix(".json")
        tmp = manifest.with_name(f".{manifest.name}.{uuid.uuid4().hex}.tmp")
        tmp.write_text(json.dumps(obj.manifest, indent=2, sort_keys=True), encoding="utf-8")
        os.replace(tmp, manifest)
        context.add_output_metadata({"path": dg.MetadataValue.path(str(path))})

    def load_input(self, context: dg.InputContext) -> TrainedModel:
        spec, cand = self.candidate(context.asset_key)
        return load_trained(self.home, spec, cand, context.asset_partition_key)
