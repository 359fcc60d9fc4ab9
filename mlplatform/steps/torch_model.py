"""A trained torch MLP behind the common ``FittedModel`` interface: predict, save, load.

Weights are stored with safetensors, everything else (architecture, preprocessing, classes,
history) as JSON next to them: nothing is pickled.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pandas as pd
import safetensors.torch
import torch

from mlplatform.spec import ProjectSpec, TorchParams
from mlplatform.steps.features import layout
from mlplatform.steps.model_types import EpochLog
from mlplatform.steps.torch_network import MLP, Inference, Preprocessing

FORMAT = "mlplatform-torch-mlp/1"
PREDICT_CHUNK = 65_536


class TorchModel:
    """A trained MLP behind the common ``FittedModel`` interface (always on CPU)."""

    def __init__(
        self,
        spec: ProjectSpec,
        mlp: MLP,
        pre: Preprocessing,
        arch: dict[str, Any],
        classes: list[str] | None,
        history: list[EpochLog],
        best_epoch: int,
        params: TorchParams,
    ):
        self.spec = spec
        self.pre = pre
        self.arch = arch
        self._classes = classes
        self._history = history
        self.best_epoch = best_epoch
        self.params = params
        self.inference = Inference(mlp.eval(), spec.task, pre).eval()

    @property
    def classes(self) -> list[str] | None:
        return None if self._classes is None else list(self._classes)

    @property
    def history(self) -> list[EpochLog]:
        return list(self._history)

    def network_inputs(self, features: pd.DataFrame) -> list[np.ndarray]:
        """What ``Inference`` takes: raw float32 numerics and/or int64 category codes."""
        out = []
        if self.pre.numeric:
            out.append(self.pre.numeric_array(features))
        if self.pre.categorical:
            out.append(self.pre.codes(features))
        return out

    def predict(self, features: pd.DataFrame) -> np.ndarray:
        inputs = self.network_inputs(features)
        chunks = []
        with torch.no_grad():
            for start in range(0, len(features), PREDICT_CHUNK):
                batch = [torch.from_numpy(a[start : start + PREDICT_CHUNK]) for a in inputs]
                chunks.append(self.inference(*batch).numpy())
        width = 1 if self._classes is None else len(self._classes)
        out = np.concatenate(chunks) if chunks else np.zeros((0, width), np.float32)
        out = out.astype(np.float64)
        return out.reshape(-1) if self._classes is None else out

    def to_onnx(self) -> onnx.ModelProto:
        from mlplatform.steps.torch_onnx import model_to_onnx

        return model_to_onnx(self)

    def state(self) -> dict[str, torch.Tensor]:
        """The learned weights, keys sorted, contiguous CPU tensors."""
        sd = self.inference.mlp.state_dict()
        return {k: sd[k].detach().cpu().contiguous() for k in sorted(sd)}

    def save(self, path: Path) -> None:
        """``path`` (safetensors weights) and ``<stem>.torch.json`` (all else), atomically."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        safetensors.torch.save_file(self.state(), str(tmp), metadata={"format": FORMAT})
        digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
        meta = {
            "format": FORMAT,
            "task": self.spec.task,
            "layout": [list(x) for x in layout(self.spec)],
            "classes": self._classes,
            "architecture": self.arch,
            "preprocessing": self.pre.to_json(),
            "params": self.params.model_dump(mode="json"),
            "best_epoch": self.best_epoch,
            "history": [h.to_json() for h in self._history],
            "weights_sha256": digest,
        }
        meta_path = sidecar(path)
        meta_tmp = meta_path.with_name(f".{meta_path.name}.tmp")
        meta_tmp.write_text(json.dumps(meta, indent=2, sort_keys=True), encoding="utf-8")
        os.replace(tmp, path)
        os.replace(meta_tmp, meta_path)


def sidecar(path: Path) -> Path:
    """The JSON file that goes with a weights file: ``<cutoff>.torch.json``."""
    return path.with_suffix(".torch.json")


def load_torch(path: Path, spec: ProjectSpec) -> TorchModel:
    """Rebuild a TorchModel from its safetensors weights and JSON sidecar (no pickle)."""
    meta_path = sidecar(path)
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{meta_path}: cannot read the torch model description ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError(f"{meta_path}: not a {FORMAT} description")
    expected_layout = [list(x) for x in layout(spec)]
    if meta.get("layout") != expected_layout or meta.get("task") != spec.task:
        raise ValueError(
            f"{meta_path}: trained for task {meta.get('task')!r} with features "
            f"{meta.get('layout')}, but the spec has task {spec.task!r} with features "
            f"{expected_layout}"
        )
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != meta.get("weights_sha256"):
        raise ValueError(f"{path}: sha256 does not match {meta_path.name} (altered or mismatched)")
    try:
        pre = Preprocessing.from_json(meta["preprocessing"])
        classes, arch, best_epoch = meta["classes"], meta["architecture"], meta["best_epoch"]
        mlp = MLP(pre, arch, 1 if classes is None else len(classes))
        history = [EpochLog(**h) for h in meta["history"]]
        params = TorchParams.model_validate(meta["params"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{meta_path}: malformed torch model description ({exc!r})") from None
    weights = safetensors.torch.load_file(str(path), device="cpu")
    _check_state(path, mlp.state_dict(), weights)
    mlp.load_state_dict(weights)
    return TorchModel(spec, mlp, pre, arch, classes, history, best_epoch, params)


def _check_state(
    path: Path, expected: dict[str, torch.Tensor], got: dict[str, torch.Tensor]
) -> None:
    problems: list[str] = []
    missing, extra = sorted(set(expected) - set(got)), sorted(set(got) - set(expected))
    if missing:
        problems.append(f"missing tensors {missing}")
    if extra:
        problems.append(f"unexpected tensors {extra}")
    for key in sorted(set(expected) & set(got)):
        want, have = expected[key], got[key]
        if want.shape != have.shape or want.dtype != have.dtype:
            got_desc = f"{tuple(have.shape)} {have.dtype}"
            problems.append(f"{key}: {got_desc}, expected {tuple(want.shape)} {want.dtype}")
    if problems:
        raise ValueError(f"{path}: weights do not fit the described network: {'; '.join(problems)}")
