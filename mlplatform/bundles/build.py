"""Write, audit and publish a content-addressed bundle of an ONNX model.

Write-audit-publish: a bundle is written to a staging folder, audited (parity, size,
latency), and only then moved atomically to ``bundles/<sha256>``.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Protocol

import numpy as np
import onnx
import onnxruntime as ort
import pandas as pd
import yaml

import mlplatform
from mlplatform.bundles import describe, staging
from mlplatform.bundles.format import (
    MANIFEST,
    MODEL_DIR,
    ONNX_FILE,
    InputSchema,
    bundle_id_of,
    file_hashes,
    onnx_inputs,
)
from mlplatform.columns import feature_layout
from mlplatform.spec import ProjectSpec

PYFUNC_ENTRY = Path(__file__).with_name("pyfunc.py")
# the whole spec package (its __init__ imports every section module), then the parsing code
SPEC_MODULES = tuple(
    f"spec/{p.name}" for p in sorted((Path(__file__).parents[1] / "spec").glob("*.py"))
)
SHIPPED_MODULES = (
    *SPEC_MODULES,
    "columns.py",
    "digests.py",
    "bundles/__init__.py",
    "bundles/format.py",
)


class Predicts(Protocol):
    """A fitted model as the audit sees it (``steps.model_types.FittedModel`` is one)."""

    def predict(self, features: pd.DataFrame) -> np.ndarray: ...


def onnx_predict(
    session: ort.InferenceSession, features: pd.DataFrame, spec: ProjectSpec
) -> np.ndarray:
    """Probabilities (classification) or values (regression) from an ONNX session."""
    layout = feature_layout(spec.columns, spec.features, spec.feature_columns)
    feeds = onnx_inputs({n: features[n].to_numpy() for n, _ in layout}, layout)
    outputs = session.run(None, feeds)
    if spec.task == "regression":
        return np.asarray(outputs[0], dtype=np.float64).reshape(-1)
    return np.asarray(outputs[1], dtype=np.float64)


def parity_error(expected: np.ndarray, got: np.ndarray, spec: ProjectSpec) -> float:
    """Largest disagreement: absolute for probabilities, relative (to max(1, |value|)) for
    regression values, since float32 ONNX arithmetic carries relative, not absolute, error."""
    if len(expected) == 0:
        return 0.0
    diff = np.abs(expected - got)
    if spec.task == "regression":
        diff = diff / np.maximum(1.0, np.abs(expected))
    return float(np.max(diff))


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_bundle(
    staging_root: Path,
    model: onnx.ModelProto,
    spec: ProjectSpec,
    manifest: dict[str, object],
) -> Path:
    """Write an MLflow pyfunc model (ONNX inside) and manifest.json into a new staging folder.

    The MLflow model is "models from code": ``MLmodel`` points at a small Python file that
    runs the ONNX graph with onnxruntime, so stock ``mlflow.pyfunc.load_model`` takes a
    DataFrame of raw columns and nothing is pickled.
    """
    build = staging.open_build(staging_root, spec.name)
    stage = build / "bundle"
    try:
        _write_model(stage, build / "work", model, manifest)
        _reproducible_mlmodel(stage / MODEL_DIR / "MLmodel")
        hashes = file_hashes(stage)
        onnx_rel = next(rel for rel in hashes if rel.endswith(f"/{ONNX_FILE}"))
        full: dict[str, object] = {
            **manifest,
            "files": hashes,
            "onnx_path": onnx_rel,
            "mlflow_model_path": MODEL_DIR,
        }
        full["bundle_id"] = bundle_id_of(full)
        _atomic_write_text(stage / MANIFEST, json.dumps(full, indent=2, sort_keys=True))
    except BaseException:
        staging.close_build(build)
        raise
    return stage


def _write_model(
    stage: Path, work: Path, model: onnx.ModelProto, manifest: dict[str, object]
) -> None:
    import mlflow.pyfunc

    stage.mkdir()
    work.mkdir()
    try:
        onnx_path = work / ONNX_FILE
        onnx.save_model(model, onnx_path)
        schema_path = work / "input_schema.json"
        schema = {**manifest["input_schema"], "classes": manifest["classes"]}  # type: ignore[dict-item]
        schema_path.write_text(json.dumps(schema, indent=2), encoding="utf-8")
        code = work / "code" / "mlplatform"
        code.mkdir(parents=True)
        (code / "__init__.py").write_text('"""Bundle copy of mlplatform parsing code."""\n')
        package = Path(mlplatform.__file__).parent
        for name in SHIPPED_MODULES:
            (code / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(package / name, code / name)
        input_schema = InputSchema.from_json(manifest["input_schema"])  # type: ignore[arg-type]
        classes = manifest["classes"]
        mlflow.pyfunc.save_model(
            path=str(stage / MODEL_DIR),
            signature=describe.signature(input_schema, classes),  # type: ignore[arg-type]
            input_example=pd.DataFrame(describe.input_example(input_schema)),
            python_model=str(PYFUNC_ENTRY),
            artifacts={"onnx": str(onnx_path), "input_schema": str(schema_path)},
            code_paths=[str(code)],
            pip_requirements=[
                f"onnxruntime=={ort.__version__}",
                f"numpy=={np.__version__}",
                f"pandas=={pd.__version__}",
                "pydantic>=2",
                "pyyaml",
            ],
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _reproducible_mlmodel(path: Path) -> None:
    """Drop what MLflow stamps per save (creation time, a random uuid, the temporary paths the
    artifacts were copied from), so the same model always gives the same bytes and bundle id.
    MLflow fills time and uuid in again when it loads the model; it reads artifacts by their
    relative ``path`` and the code file by its base name."""
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    doc.pop("utc_time_created", None)
    doc.pop("model_uuid", None)
    pyfunc = doc.get("flavors", {}).get("python_function", {})
    for artifact in pyfunc.get("artifacts", {}).values():
        artifact.pop("uri", None)
    if pyfunc.get("model_code_path"):
        pyfunc["model_code_path"] = Path(pyfunc["model_code_path"]).name
    _atomic_write_text(path, yaml.safe_dump(doc, sort_keys=True))


def audit_bundle(
    stage: Path, model: Predicts, holdout: pd.DataFrame, spec: ProjectSpec
) -> dict[str, float]:
    """Parity of the bundle's ONNX graph with the fitted model on the holdout, size and
    single-row latency."""
    onnx_file = next(stage.glob(f"{MODEL_DIR}/**/{ONNX_FILE}"))
    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    expected = model.predict(holdout)
    got = onnx_predict(session, holdout, spec)
    one = holdout.iloc[:1]
    onnx_predict(session, one, spec)
    timings = []
    for _ in range(50):
        t0 = time.perf_counter()
        onnx_predict(session, one, spec)
        timings.append(time.perf_counter() - t0)
    size = sum(p.stat().st_size for p in stage.rglob("*") if p.is_file())
    return {
        "max_abs_diff": float(np.max(np.abs(expected - got))) if len(expected) else 0.0,
        "parity_error": parity_error(expected, got, spec),
        "size_bytes": float(size),
        "latency_p50_ms": float(np.percentile(timings, 50) * 1000),
    }


def publish_bundle(stage: Path, bundles_dir: Path) -> Path:
    """Move an audited staging folder to ``bundles/<bundle_id>`` (atomic rename); its build
    folder is removed. Publishing the same content twice keeps the first copy: bundles are
    immutable.
    """
    manifest = json.loads((stage / MANIFEST).read_text(encoding="utf-8"))
    target = bundles_dir / manifest["bundle_id"]
    bundles_dir.mkdir(parents=True, exist_ok=True)
    if not target.exists():
        os.replace(stage, target)
    staging.close_build(stage.parent)
    return target


def discard_bundle(stage: Path) -> None:
    """Remove an unpublished bundle and its build folder."""
    staging.close_build(stage.parent)
