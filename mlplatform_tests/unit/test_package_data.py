"""Every non-Python file inside the package is declared package data, so a built wheel has it
(templates, migrations, example specs)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "mlplatform"


def test_every_data_file_is_declared() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    globs = config["tool"]["setuptools"]["package-data"]["mlplatform"]
    declared = {p for g in globs for p in PACKAGE.glob(g) if p.is_file()}
    data = {
        p
        for p in PACKAGE.rglob("*")
        if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts
    }
    missing = sorted(str(p.relative_to(ROOT)) for p in data - declared)
    assert not missing, f"add to [tool.setuptools.package-data] in pyproject.toml: {missing}"


def test_report_templates_are_data() -> None:
    templates = {p.name for p in (PACKAGE / "steps" / "report" / "templates").iterdir()}
    assert {"report.html.j2", "report.css"} <= templates
