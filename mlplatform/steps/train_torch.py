"""The torch candidate: an MLP over standardized numerics and learned category embeddings.

Preprocessing (imputation, scaling, category vocabularies) is fitted on the fit part of the
training window; the validation slice for early stopping is the *end* of the window in time
order. Training is deterministic for a given seed: same data + seed give identical weights.
Weights are stored with safetensors, everything else (architecture, preprocessing, classes,
history) as JSON next to them: nothing is pickled.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pandas as pd
import safetensors.torch
import torch
from torch import nn

from mlplatform.columns import MISSING_CATEGORY
from mlplatform.spec import Candidate, ProjectSpec, TorchParams
from mlplatform.steps.candidates import EpochLog, OnEpoch
from mlplatform.steps.evaluate import Prediction, score
from mlplatform.steps.features import layout

FORMAT = "mlplatform-torch-mlp/1"
PREDICT_CHUNK = 65_536


# ---------------------------------------------------------------------------- preprocessing


@dataclass(frozen=True)
class Preprocessing:
    """What turns feature columns into network inputs; fitted on the fit part only.

    Numerics: NaN -> ``fill``, then ``(x - mean) / std``. Categories: index in ``vocabularies``
    + 1; 0 means missing or unseen. Regression targets are trained as ``(y - mean) / std``.
    """

    numeric: list[str]
    fill: list[float]
    mean: list[float]
    std: list[float]
    categorical: list[str]
    vocabularies: list[list[str]]
    target_mean: float = 0.0
    target_std: float = 1.0

    def to_json(self) -> dict[str, Any]:
        return {
            "numeric": self.numeric,
            "fill": self.fill,
            "mean": self.mean,
            "std": self.std,
            "categorical": self.categorical,
            "vocabularies": self.vocabularies,
            "target_mean": self.target_mean,
            "target_std": self.target_std,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Preprocessing:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__})

    def numeric_array(self, frame: pd.DataFrame) -> np.ndarray:
        """Raw numerics as float32 [N, n_numeric] (NaN kept: the network imputes)."""
        if not self.numeric:
            return np.zeros((len(frame), 0), dtype=np.float32)
        return np.column_stack(
            [pd.to_numeric(frame[n], errors="coerce").to_numpy(np.float32) for n in self.numeric]
        ).astype(np.float32)

    def codes(self, frame: pd.DataFrame) -> np.ndarray:
        """Category indices as int64 [N, n_categorical]: 0 for missing or unseen values."""
        cols = []
        for name, vocab in zip(self.categorical, self.vocabularies, strict=True):
            # str() like the ONNX feeds (bundles/format.onnx_inputs), so both agree on every value
            values = frame[name].to_numpy(dtype=object).astype(str)
            cat = pd.Categorical(values, categories=vocab)
            cols.append(np.asarray(cat.codes, dtype=np.int64) + 1)
        if not cols:
            return np.zeros((len(frame), 0), dtype=np.int64)
        return np.column_stack(cols).astype(np.int64)


def _impute_value(values: np.ndarray, how: str) -> float:
    present = values[~np.isnan(values)]
    if how == "zero" or present.size == 0:
        return 0.0
    return float(np.median(present) if how == "median" else np.mean(present))


def fit_preprocessing(fit: pd.DataFrame, spec: ProjectSpec) -> Preprocessing:
    """Imputation values, scaling and vocabularies from the fit part of the window."""
    feats = layout(spec)
    numeric = [n for n, kind in feats if kind == "numeric"]
    categorical = [n for n, kind in feats if kind == "category"]
    fill, mean, std = [], [], []
    for name in numeric:
        x = pd.to_numeric(fit[name], errors="coerce").to_numpy(np.float64)
        value = _impute_value(x, spec.features.numeric_imputation)
        x = np.where(np.isnan(x), value, x)
        sd = float(np.std(x)) if x.size else 0.0
        fill.append(value)
        mean.append(float(np.mean(x)) if x.size else 0.0)
        std.append(sd if math.isfinite(sd) and sd > 1e-12 else 1.0)
    vocabularies = []
    for name in categorical:
        seen = {str(v) for v in fit[name].to_numpy(dtype=object) if isinstance(v, str)}
        vocabularies.append(sorted(seen - {MISSING_CATEGORY}))
    target_mean, target_std = 0.0, 1.0
    if spec.task == "regression":
        y = fit[spec.target].to_numpy(np.float64)
        target_mean = float(np.mean(y))
        sd = float(np.std(y))
        target_std = sd if math.isfinite(sd) and sd > 1e-12 else 1.0
    return Preprocessing(
        numeric, fill, mean, std, categorical, vocabularies, target_mean, target_std
    )


def validation_split(n_rows: int, fraction: float) -> tuple[slice, slice]:
    """(fit rows, validation rows) of a window in time order: validation is its last part."""
    if n_rows < 2:
        raise ValueError(f"the training window has {n_rows} row(s): too few to train")
    n_val = min(max(1, round(n_rows * fraction)), n_rows - 1)
    return slice(0, n_rows - n_val), slice(n_rows - n_val, n_rows)


def balanced_class_weights(codes: np.ndarray, n_classes: int) -> np.ndarray:
    """``n / (k * count)`` per class, k = classes present; 0 for a class with no rows."""
    counts = np.bincount(codes, minlength=n_classes).astype(np.float64)
    present = counts > 0
    weights = np.zeros(n_classes)
    weights[present] = len(codes) / (present.sum() * counts[present])
    return weights


def embedding_dim(n_values: int, params: TorchParams) -> int:
    """Embedding size of a category with ``n_values`` known values: the param, or
    min(16, ⌈n/2⌉) with n counting the known values and the missing/unseen index."""
    return params.embedding_dim or min(16, math.ceil((n_values + 1) / 2))


# ---------------------------------------------------------------------------- network


class MLP(nn.Module):
    """Preprocessing of raw numerics + category embeddings + MLP; outputs logits (or the
    standardized regression value). Preprocessing constants are non-persistent buffers: the
    state dict (safetensors) holds only what was learned."""

    # buffers (register_buffer below); typed here, as nn.Module.__getattr__ says Tensor | Module
    fill: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, pre: Preprocessing, arch: dict[str, Any], n_outputs: int):
        super().__init__()
        self.register_buffer("fill", torch.tensor(pre.fill, dtype=torch.float32), False)
        self.register_buffer("mean", torch.tensor(pre.mean, dtype=torch.float32), False)
        self.register_buffer("std", torch.tensor(pre.std, dtype=torch.float32), False)
        dims = arch["embedding_dims"]
        self.embeddings = nn.ModuleList(
            nn.Embedding(len(vocab) + 1, dim, padding_idx=0)
            for vocab, dim in zip(pre.vocabularies, dims, strict=True)
        )
        layers: list[nn.Module] = []
        width = len(pre.numeric) + sum(dims)
        for units in arch["hidden_layers"]:
            layers += [nn.Linear(width, units), nn.ReLU(), nn.Dropout(arch["dropout"])]
            width = units
        layers.append(nn.Linear(width, n_outputs))
        self.layers = nn.Sequential(*layers)

    def forward(self, numeric: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        parts = []
        if numeric.shape[1]:
            x = torch.where(torch.isnan(numeric), self.fill, numeric)
            parts.append((x - self.mean) / self.std)
        parts += [emb(codes[:, i]) for i, emb in enumerate(self.embeddings)]
        return self.layers(torch.cat(parts, dim=1))


class Inference(nn.Module):
    """The network as served: probabilities [N, C] or values [N, 1] (un-standardized).

    Takes only the inputs the model has (numerics and/or category codes), so that the ONNX
    export has no empty tensors."""

    def __init__(self, mlp: MLP, task: str, pre: Preprocessing):
        super().__init__()
        self.mlp = mlp
        self.task = task
        self.has_numeric = bool(pre.numeric)
        self.has_codes = bool(pre.categorical)
        self.target_mean = float(pre.target_mean)
        self.target_std = float(pre.target_std)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        it = iter(inputs)
        numeric = next(it) if self.has_numeric else None
        codes = next(it) if self.has_codes else None
        ref = numeric if numeric is not None else codes
        assert ref is not None, "a model has at least one feature"
        if numeric is None:
            numeric = torch.zeros((ref.shape[0], 0), dtype=torch.float32, device=ref.device)
        if codes is None:
            codes = torch.zeros((ref.shape[0], 0), dtype=torch.int64, device=ref.device)
        out = self.mlp(numeric, codes)
        if self.task == "regression":
            return out * self.target_std + self.target_mean
        return torch.softmax(out, dim=1)


# ---------------------------------------------------------------------------- training


def resolve_device(device: str) -> torch.device:
    """'auto' -> cuda when a GPU is present, else cpu."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was requested but no CUDA GPU is available")
    return torch.device(device)


_FIT_LOCK = threading.Lock()


@contextmanager
def deterministic(seed: int, device: torch.device) -> Iterator[None]:
    """Seeded, deterministic torch for the duration of a fit; global state restored after.

    One intra-op thread: results must not depend on how many cores a machine has. The RNG,
    thread count and deterministic mode are process-wide, so fits in threads of one process
    (e.g. parallel search trials) take turns; processes run in parallel.
    On CUDA, deterministic mode only warns where an op has no deterministic kernel (or cuBLAS
    was initialized before ``CUBLAS_WORKSPACE_CONFIG`` could be set): bit-identical weights
    are promised on CPU.
    """
    cuda = device.type == "cuda"
    if cuda:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    with _FIT_LOCK, torch.random.fork_rng(devices=[device.index or 0] if cuda else []):
        was_enabled = torch.are_deterministic_algorithms_enabled()
        was_warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
        threads = torch.get_num_threads()
        torch.manual_seed(seed)
        torch.use_deterministic_algorithms(True, warn_only=cuda)
        torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.set_num_threads(threads)
            torch.use_deterministic_algorithms(was_enabled, warn_only=was_warn_only)


@dataclass
class _Tensors:
    numeric: torch.Tensor
    codes: torch.Tensor
    target: torch.Tensor

    def rows(self, idx: torch.Tensor | slice) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.numeric[idx], self.codes[idx], self.target[idx]


def _tensors(
    frame: pd.DataFrame, pre: Preprocessing, y: np.ndarray, device: torch.device
) -> _Tensors:
    return _Tensors(
        torch.from_numpy(pre.numeric_array(frame)).to(device),
        torch.from_numpy(pre.codes(frame)).to(device),
        torch.from_numpy(y).to(device),
    )


def _target(
    frame: pd.DataFrame, spec: ProjectSpec, pre: Preprocessing, classes: list[str]
) -> np.ndarray:
    if spec.task == "regression":
        y = frame[spec.target].to_numpy(np.float64)
        return ((y - pre.target_mean) / pre.target_std).astype(np.float32).reshape(-1, 1)
    index = {c: i for i, c in enumerate(classes)}
    return np.array([index[str(v)] for v in frame[spec.target].to_numpy(dtype=object)], np.int64)


def fit_torch(
    train: pd.DataFrame,
    spec: ProjectSpec,
    candidate: Candidate,
    on_epoch: OnEpoch | None = None,
) -> TorchModel:
    """Train the MLP on a training window (features + target, rows in time order).

    The last ``validation_fraction`` of rows is the validation slice: early stopping watches
    its loss and the best epoch's weights are kept. ``on_epoch`` is called after every epoch
    with losses and every task metric on the validation slice; what it raises propagates.
    """
    params = candidate.torch_params()
    device = resolve_device(params.device)
    fit_rows, val_rows = validation_split(len(train), params.validation_fraction)
    fit_part, val_part = train.iloc[fit_rows], train.iloc[val_rows]
    classes: list[str] | None = None
    if spec.task != "regression":
        classes = sorted({str(v) for v in train[spec.target].to_numpy(dtype=object)})
        if len(classes) < 2:
            raise ValueError(f"the training window has a single class {classes[0]!r}: cannot train")
    pre = fit_preprocessing(fit_part, spec)
    arch = {
        "hidden_layers": list(params.hidden_layers),
        "dropout": params.dropout,
        "embedding_dims": [embedding_dim(len(v), params) for v in pre.vocabularies],
    }
    n_out = 1 if classes is None else len(classes)
    fit_y = _target(fit_part, spec, pre, classes or [])
    val_y = _target(val_part, spec, pre, classes or [])
    with deterministic(spec.training.seed, device):
        generator = torch.Generator().manual_seed(spec.training.seed)
        mlp = MLP(pre, arch, n_out).to(device)
        if classes is None:
            loss_fn: nn.Module = nn.MSELoss()
        else:
            weights = (
                balanced_class_weights(fit_y, len(classes))
                if params.class_weights == "balanced"
                else np.ones(len(classes))
            )
            loss_fn = nn.CrossEntropyLoss(weight=torch.tensor(weights, dtype=torch.float32))
        loss_fn = loss_fn.to(device)
        optimizer = torch.optim.AdamW(
            mlp.parameters(), lr=params.learning_rate, weight_decay=params.weight_decay
        )
        fit_t = _tensors(fit_part, pre, fit_y, device)
        val_t = _tensors(val_part, pre, val_y, device)
        history: list[EpochLog] = []
        best_loss, best_epoch, best_state = math.inf, 0, copy.deepcopy(mlp.state_dict())
        for epoch in range(1, params.max_epochs + 1):
            t0 = time.perf_counter()
            mlp.train()
            order = torch.randperm(len(fit_y), generator=generator).to(device)
            total = torch.zeros((), device=device)
            for start in range(0, len(fit_y), params.batch_size):
                numeric, codes, target = fit_t.rows(order[start : start + params.batch_size])
                loss = loss_fn(mlp(numeric, codes), target)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total += loss.detach() * len(target)
            mlp.eval()
            with torch.no_grad():
                out = mlp(val_t.numeric, val_t.codes)
                val_loss = float(loss_fn(out, val_t.target))
            metrics = _val_metrics(out.cpu(), val_part, spec, pre, classes)
            train_loss = float(total) / len(fit_y)
            log = EpochLog(epoch, train_loss, val_loss, metrics, time.perf_counter() - t0)
            history.append(log)
            if val_loss < best_loss:
                best_loss, best_epoch = val_loss, epoch
                best_state = {k: v.detach().clone() for k, v in mlp.state_dict().items()}
            if on_epoch is not None:
                on_epoch(log)
            if epoch - best_epoch >= params.patience:
                break
        mlp.load_state_dict(best_state)
    mlp = mlp.cpu().eval()
    return TorchModel(spec, mlp, pre, arch, classes, history, best_epoch, params)


def _val_metrics(
    out: torch.Tensor,
    val: pd.DataFrame,
    spec: ProjectSpec,
    pre: Preprocessing,
    classes: list[str] | None,
) -> dict[str, float]:
    y = val[spec.target].to_numpy()
    if classes is None:
        values = out.reshape(-1).double().numpy() * pre.target_std + pre.target_mean
        pred = Prediction(values=values)
    else:
        pred = Prediction(classes=classes, proba=torch.softmax(out, dim=1).double().numpy())
        y = np.asarray([str(v) for v in y], dtype=object)
    return score(y, pred, spec.task)


# ---------------------------------------------------------------------------- the model


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
