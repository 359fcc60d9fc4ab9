"""The torch network: preprocessing fitted on the training window, the MLP and its served form.

Numerics are imputed and standardized inside the network; categories become learned
embeddings. Preprocessing constants are plain JSON (``Preprocessing.to_json``): nothing is pickled.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from mlplatform.columns import MISSING_CATEGORY
from mlplatform.spec import ProjectSpec, TorchParams
from mlplatform.steps.features import layout

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
    return fit_preprocessing_from(lambda name: fit[name], spec)


def fit_preprocessing_from(column: Callable[[str], pd.Series], spec: ProjectSpec) -> Preprocessing:
    """``fit_preprocessing`` from the fit part's columns, one at a time (``column(name)``)."""
    feats = layout(spec)
    numeric = [n for n, kind in feats if kind == "numeric"]
    categorical = [n for n, kind in feats if kind == "category"]
    fill, mean, std = [], [], []
    for name in numeric:
        x = pd.to_numeric(column(name), errors="coerce").to_numpy(np.float64)
        value = _impute_value(x, spec.features.numeric_imputation)
        x = np.where(np.isnan(x), value, x)
        sd = float(np.std(x)) if x.size else 0.0
        fill.append(value)
        mean.append(float(np.mean(x)) if x.size else 0.0)
        std.append(sd if math.isfinite(sd) and sd > 1e-12 else 1.0)
    vocabularies = []
    for name in categorical:
        seen = {str(v) for v in pd.unique(column(name).dropna()) if isinstance(v, str)}
        vocabularies.append(sorted(seen - {MISSING_CATEGORY}))
    target_mean, target_std = 0.0, 1.0
    if spec.task == "regression":
        y = column(spec.target).to_numpy(np.float64)
        target_mean = float(np.mean(y))
        sd = float(np.std(y))
        target_std = sd if math.isfinite(sd) and sd > 1e-12 else 1.0
    return Preprocessing(
        numeric, fill, mean, std, categorical, vocabularies, target_mean, target_std
    )


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
