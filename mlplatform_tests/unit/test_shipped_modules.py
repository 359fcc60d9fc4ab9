"""A bundle's MLflow model imports ``mlplatform.spec`` from its own copy of the code: every
module of the spec package must be in that copy, or stock ``mlflow.pyfunc`` cannot load it."""

from __future__ import annotations

from pathlib import Path

from mlplatform.bundles.build import SHIPPED_MODULES

PACKAGE = Path(__file__).resolve().parents[2] / "mlplatform"


def test_every_spec_module_is_shipped_in_bundles() -> None:
    spec_modules = {p.relative_to(PACKAGE).as_posix() for p in (PACKAGE / "spec").glob("*.py")}
    assert spec_modules - set(SHIPPED_MODULES) == set()
