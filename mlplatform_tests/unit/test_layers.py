"""Layer contracts: import-linter's contracts hold, and serving loads no heavy library."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_import_contracts_hold() -> None:
    linter = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(linter)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_serving_imports_no_heavy_library() -> None:
    code = (
        "import sys, mlplatform.bundles.format, mlplatform.bundles.catalog\n"
        "import mlplatform.serving.app\n"
        "heavy = [m for m in ('dagster', 'sklearn', 'torch', 'mlflow', 'skl2onnx') "
        "if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""


def test_steps_import_no_dagster() -> None:
    code = (
        "import sys, pkgutil, importlib, mlplatform.steps as s\n"
        "for m in pkgutil.iter_modules(s.__path__):\n"
        "    importlib.import_module(f'mlplatform.steps.{m.name}')\n"
        "print('dagster' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"


def test_dagster_internals_stay_in_one_module() -> None:
    """Private ``dagster._...`` imports live in defs/dagster_internals.py alone."""
    allowed = ROOT / "mlplatform" / "defs" / "dagster_internals.py"
    offenders = []
    for path in sorted((ROOT / "mlplatform").rglob("*.py")):
        if path == allowed:
            continue
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            for name in names:
                if name.startswith("dagster._"):
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {name}")
    assert offenders == [], "\n".join(offenders)


def test_bundles_import_no_dagster_or_fastapi() -> None:
    """Building a bundle (export, audit, publish) loads neither the orchestrator nor the web
    framework: bundles sit below every face."""
    code = (
        "import sys, mlplatform.bundles.build, mlplatform.bundles.catalog\n"
        "print(','.join(m for m in ('dagster', 'fastapi') if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""
