"""Training the torch candidate: an MLP over standardized numerics and category embeddings.

Preprocessing (imputation, scaling, category vocabularies) is fitted on the fit part of the
training window; the validation slice for early stopping is the *end* of the window in time
order. Training is deterministic for a given seed: same data + seed give identical weights.
The network is in ``torch_network``, the trained model (predict, save, load) in ``torch_model``.
"""

from __future__ import annotations

import copy
import math
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn

from mlplatform.spec import Candidate, ProjectSpec, TorchParams
from mlplatform.steps.evaluate import Prediction, score
from mlplatform.steps.model_types import EpochLog, OnEpoch
from mlplatform.steps.torch_model import TorchModel
from mlplatform.steps.torch_network import (
    MLP,
    Preprocessing,
    embedding_dim,
    fit_preprocessing,
    fit_preprocessing_from,
)
from mlplatform.steps.window_files import WindowFiles


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
    numeric: np.ndarray, codes: np.ndarray, y: np.ndarray, device: torch.device
) -> _Tensors:
    return _Tensors(
        torch.from_numpy(numeric).to(device),
        torch.from_numpy(codes).to(device),
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


@dataclass
class _Inputs:
    """The network's inputs of a window: preprocessing, classes, fit and validation arrays."""

    pre: Preprocessing
    classes: list[str] | None
    fit: tuple[np.ndarray, np.ndarray, np.ndarray]  # numeric, codes, target
    val: tuple[np.ndarray, np.ndarray, np.ndarray]
    val_frame: pd.DataFrame  # the validation rows' target


def _classes(target: pd.Series, spec: ProjectSpec) -> list[str] | None:
    if spec.task == "regression":
        return None
    classes = sorted({str(v) for v in pd.unique(target)})
    if len(classes) < 2:
        raise ValueError(f"the training window has a single class {classes[0]!r}: cannot train")
    return classes


def _frame_inputs(train: pd.DataFrame, spec: ProjectSpec, fraction: float) -> _Inputs:
    fit_rows, val_rows = validation_split(len(train), fraction)
    fit_part, val_part = train.iloc[fit_rows], train.iloc[val_rows]
    classes = _classes(train[spec.target], spec)
    pre = fit_preprocessing(fit_part, spec)
    fit_y = _target(fit_part, spec, pre, classes or [])
    val_y = _target(val_part, spec, pre, classes or [])
    return _Inputs(
        pre,
        classes,
        (pre.numeric_array(fit_part), pre.codes(fit_part), fit_y),
        (pre.numeric_array(val_part), pre.codes(val_part), val_y),
        val_part,
    )


def _streamed_inputs(window: WindowFiles, spec: ProjectSpec, fraction: float) -> _Inputs:
    """``_frame_inputs`` of the window's rows in order, read a column or a batch at a time:
    the same arrays, without the window as one frame."""
    fit_rows, val_rows = validation_split(len(window), fraction)
    classes = _classes(window.column(spec.target), spec)
    pre = fit_preprocessing_from(lambda name: window.column(name, fit_rows), spec)
    numeric, codes, target = [], [], []
    for batch in window.batches([*pre.numeric, *pre.categorical, spec.target]):
        numeric.append(pre.numeric_array(batch))
        codes.append(pre.codes(batch))
        target.append(_target(batch, spec, pre, classes or []))
    arrays = [np.concatenate(parts) for parts in (numeric, codes, target)]
    del numeric, codes, target
    val_frame = window.column(spec.target, val_rows).to_frame()
    return _Inputs(
        pre,
        classes,
        (arrays[0][fit_rows], arrays[1][fit_rows], arrays[2][fit_rows]),
        (arrays[0][val_rows], arrays[1][val_rows], arrays[2][val_rows]),
        val_frame.reset_index(drop=True),
    )


def fit_torch(
    train: pd.DataFrame | WindowFiles,
    spec: ProjectSpec,
    candidate: Candidate,
    on_epoch: OnEpoch | None = None,
) -> TorchModel:
    """Train the MLP on a training window (features + target, rows in time order): one frame,
    or the partitions' files read in batches (``WindowFiles``; the same model).

    The last ``validation_fraction`` of rows is the validation slice: early stopping watches
    its loss and the best epoch's weights are kept. ``on_epoch`` is called after every epoch
    with losses and every task metric on the validation slice; what it raises propagates.
    """
    params = candidate.torch_params()
    device = resolve_device(params.device)
    if isinstance(train, WindowFiles):
        inputs = _streamed_inputs(train, spec, params.validation_fraction)
    else:
        inputs = _frame_inputs(train, spec, params.validation_fraction)
    pre, classes = inputs.pre, inputs.classes
    arch = {
        "hidden_layers": list(params.hidden_layers),
        "dropout": params.dropout,
        "embedding_dims": [embedding_dim(len(v), params) for v in pre.vocabularies],
    }
    n_out = 1 if classes is None else len(classes)
    with deterministic(spec.training.seed, device):
        mlp = MLP(pre, arch, n_out).to(device)
        loss_fn = _loss_fn(classes, inputs.fit[2], params).to(device)
        fit_t = _tensors(*inputs.fit, device)
        val_t = _tensors(*inputs.val, device)
        validation = _Validation(inputs.val_frame, spec, pre, classes)
        history, best_epoch = _train(mlp, loss_fn, fit_t, val_t, validation, params, on_epoch)
    mlp = mlp.cpu().eval()
    return TorchModel(spec, mlp, pre, arch, classes, history, best_epoch, params)


def _loss_fn(classes: list[str] | None, fit_y: np.ndarray, params: TorchParams) -> nn.Module:
    """MSE for regression; cross-entropy, class-weighted when ``class_weights: balanced``."""
    if classes is None:
        return nn.MSELoss()
    weights = (
        balanced_class_weights(fit_y, len(classes))
        if params.class_weights == "balanced"
        else np.ones(len(classes))
    )
    return nn.CrossEntropyLoss(weight=torch.tensor(weights, dtype=torch.float32))


@dataclass(frozen=True)
class _Validation:
    """What scores the validation slice every epoch."""

    frame: pd.DataFrame
    spec: ProjectSpec
    pre: Preprocessing
    classes: list[str] | None


def _train(
    mlp: MLP,
    loss_fn: nn.Module,
    fit_t: _Tensors,
    val_t: _Tensors,
    val: _Validation,
    params: TorchParams,
    on_epoch: OnEpoch | None,
) -> tuple[list[EpochLog], int]:
    """Epochs with early stopping on the validation loss; ``mlp`` ends with the best epoch's
    weights. Returns the per-epoch log and the best epoch."""
    device = fit_t.target.device
    generator = torch.Generator().manual_seed(val.spec.training.seed)
    optimizer = torch.optim.AdamW(
        mlp.parameters(), lr=params.learning_rate, weight_decay=params.weight_decay
    )
    history: list[EpochLog] = []
    best_loss, best_epoch, best_state = math.inf, 0, copy.deepcopy(mlp.state_dict())
    for epoch in range(1, params.max_epochs + 1):
        t0 = time.perf_counter()
        mlp.train()
        order = torch.randperm(len(fit_t.target), generator=generator).to(device)
        total = torch.zeros((), device=device)
        for start in range(0, len(fit_t.target), params.batch_size):
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
        metrics = _val_metrics(out.cpu(), val.frame, val.spec, val.pre, val.classes)
        train_loss = float(total) / len(fit_t.target)
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
    return history, best_epoch


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
