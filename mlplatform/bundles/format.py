"""The bundle format: manifest, hashes, verification, loading, and the input schema that turns
raw column values into model inputs."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mlplatform.columns import derive_features, parse_column
from mlplatform.digests import file_sha256
from mlplatform.spec import Column, Features

MANIFEST = "manifest.json"
MODEL_DIR = "model"
ONNX_FILE = "model.onnx"
BUNDLE_ID = re.compile(r"^[0-9a-f]{64}$")  # a bundle id: the sha256 of its manifest


class BundleError(Exception):
    """A bundle that must not be used: missing, altered or malformed."""


def file_hashes(root: Path) -> dict[str, str]:
    """sha256 of every file under root except the manifest, by POSIX relative path."""
    return {
        p.relative_to(root).as_posix(): file_sha256(p)
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != MANIFEST
    }


def bundle_id_of(manifest: Mapping[str, Any]) -> str:
    """The bundle id: sha256 of the canonical manifest JSON without its own id field."""
    body = {k: v for k, v in manifest.items() if k != "bundle_id"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def published_at(path: Path) -> str:
    """When a bundle folder was published (its manifest's modification time, UTC ISO 8601).
    Not part of the manifest: the bundle id covers content only, so the same training yields
    the same id."""
    stamp = (path / MANIFEST).stat().st_mtime
    return dt.datetime.fromtimestamp(stamp, dt.UTC).isoformat(timespec="seconds")


def onnx_inputs(
    features: Mapping[str, np.ndarray], layout: Sequence[tuple[str, str]]
) -> dict[str, np.ndarray]:
    """ONNX feeds: one [N, 1] tensor per feature, float32 or str."""
    feeds = {}
    for name, kind in layout:
        values = np.asarray(features[name])
        if kind == "numeric":
            feeds[name] = values.astype(np.float32).reshape(-1, 1)
        else:
            feeds[name] = values.astype(str).astype(object).reshape(-1, 1)
    return feeds


def verify(path: Path) -> dict[str, Any]:
    """Check a bundle folder against its manifest; return the manifest or raise BundleError."""
    manifest_file = path / MANIFEST
    if not manifest_file.is_file():
        raise BundleError(f"{path}: no {MANIFEST}")
    try:
        manifest = json.loads(manifest_file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{manifest_file}: unreadable manifest ({exc})") from None
    if bundle_id_of(manifest) != manifest.get("bundle_id"):
        raise BundleError(f"{manifest_file}: manifest content does not match its bundle id")
    expected: dict[str, str] = manifest.get("files", {})
    actual = file_hashes(path)
    for rel in sorted(set(expected) | set(actual)):
        if rel not in actual:
            raise BundleError(f"{path / rel}: listed in the manifest but missing")
        if rel not in expected:
            raise BundleError(f"{path / rel}: not listed in the manifest")
        if actual[rel] != expected[rel]:
            raise BundleError(f"{path / rel}: sha256 mismatch (the file was altered)")
    return manifest


@dataclass
class InputSchema:
    """How raw request columns become model inputs (copied from the project spec)."""

    columns: dict[str, Column]
    features: Features
    feature_columns: list[str]
    layout: list[tuple[str, str]]

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> InputSchema:
        return cls(
            columns={k: Column.model_validate(v) for k, v in data["columns"].items()},
            features=Features.model_validate(data["features"]),
            feature_columns=list(data["feature_columns"]),
            layout=[(n, k) for n, k in data["layout"]],
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "columns": {k: v.model_dump(mode="json") for k, v in self.columns.items()},
            "features": self.features.model_dump(mode="json"),
            "feature_columns": self.feature_columns,
            "layout": [list(x) for x in self.layout],
        }

    def model_inputs(self, raw: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Parse raw columns (lists or arrays of any scalar) and derive the feature tensors."""
        missing = [c for c in self.feature_columns if c not in raw]
        if missing:
            raise KeyError(f"missing input column(s): {', '.join(missing)}")
        parsed = {c: parse_column(raw[c], self.columns[c]).values for c in self.feature_columns}
        feats = derive_features(parsed, self.columns, self.features, self.feature_columns)
        return onnx_inputs(feats, self.layout)


class Bundle:
    """A verified bundle with an onnxruntime session (one thread: serving runs many requests
    side by side; batch scoring runs the model beside its parsing thread)."""

    def __init__(self, path: Path, manifest: dict[str, Any], threads: int = 1):
        self.path = path
        self.manifest = manifest
        self.schema = InputSchema.from_json(manifest["input_schema"])
        self.classes: list[str] | None = manifest.get("classes")
        import onnxruntime as ort  # here, not at module level: defining assets must stay light

        onnx_path = path / manifest["onnx_path"]
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = threads
        self.session = ort.InferenceSession(
            str(onnx_path), sess_options=options, providers=["CPUExecutionProvider"]
        )

    @property
    def bundle_id(self) -> str:
        return str(self.manifest["bundle_id"])

    def predict_features(self, features: Mapping[str, np.ndarray]) -> np.ndarray:
        """Probabilities [N, classes] or values [N] from already-derived feature columns."""
        outputs = self.session.run(None, onnx_inputs(features, self.schema.layout))
        if self.classes is None:
            return np.asarray(outputs[0], dtype=np.float64).reshape(-1)
        return np.asarray(outputs[1], dtype=np.float64)

    def predict_columns(self, raw: Mapping[str, Any]) -> np.ndarray:
        """Like predict_features, from raw column values as they land."""
        outputs = self.session.run(None, self.schema.model_inputs(raw))
        if self.classes is None:
            return np.asarray(outputs[0], dtype=np.float64).reshape(-1)
        return np.asarray(outputs[1], dtype=np.float64)

    def predict_rows(self, rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """One result per row: {"label", "probabilities"} or {"value"}."""
        raw = {c: [row.get(c) for row in rows] for c in self.schema.feature_columns}
        out = self.predict_columns(raw)
        if self.classes is None:
            return [{"value": float(v)} for v in out]
        return [
            {
                "label": self.classes[int(np.argmax(p))],
                "probabilities": dict(zip(self.classes, map(float, p), strict=True)),
            }
            for p in out
        ]


def load(path: Path | str, threads: int = 1) -> Bundle:
    """Verify every file hash of a bundle, then build its onnxruntime session."""
    path = Path(path)
    return Bundle(path, verify(path), threads)
