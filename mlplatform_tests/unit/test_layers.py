"""Layer contracts: import-linter's contracts hold, serving loads no heavy library, and the
steps import one another without a circle."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

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


@pytest.mark.e2e  # imports every step (torch, sklearn, mlflow, optuna) in a fresh process
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


def test_steps_import_one_another_without_a_circle() -> None:
    """No step module imports (at run time, function-local imports included) a module that
    imports it back; imports under ``TYPE_CHECKING`` never run and are left out."""
    graph = grimp.build_graph("mlplatform", exclude_type_checking_imports=True, cache_dir=None)
    steps = sorted(m for m in graph.modules if m.startswith("mlplatform.steps."))
    circles = []
    for module in steps:
        for imported in sorted(graph.find_modules_directly_imported_by(module)):
            if imported.startswith("mlplatform.steps.") and graph.chain_exists(
                importer=imported, imported=module
            ):
                back = graph.find_shortest_chain(importer=imported, imported=module) or ()
                circles.append(" -> ".join((module, *back)))
    assert circles == []
