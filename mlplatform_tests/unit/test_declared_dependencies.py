"""Every third-party module the package imports is a declared runtime dependency, with a
range that holds the lock's pin: `pip install .` gives a package that runs, and the lock is
the tested set inside those ranges."""

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest
from packaging.specifiers import SpecifierSet

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
# Needed at run time although never imported by name.
INDIRECT = {"onnxscript": "torch.onnx.export(dynamo=True)", "psycopg2-binary": "dagster-postgres"}


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_name(req: str) -> str:
    return _canonical(re.split(r"[<>=!~;\[ ]", req, maxsplit=1)[0])


def imported_top_levels() -> set[str]:
    names: set[str] = set()
    for path in (ROOT / "mlplatform").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names and n != "mlplatform"}


def declared() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return {_requirement_name(r): r for r in project["dependencies"]}


def locked() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.lock").read_text(encoding="utf-8").splitlines():
        if "==" in line and not line.lstrip().startswith(("#", "-")):
            name, version = line.split("==", 1)
            pins[_canonical(name)] = version.strip()
    return pins


def test_every_imported_module_is_declared() -> None:
    providers = packages_distributions()
    deps = declared()
    missing = []
    for module in sorted(imported_top_levels()):
        dists = {_canonical(d) for d in providers.get(module, [])}
        if not dists:
            missing.append(f"{module} (no installed distribution provides it)")
        elif not dists & deps.keys():
            missing.append(f"{module} (from {', '.join(sorted(dists))})")
    missing += [f"{d} ({why})" for d, why in INDIRECT.items() if d not in deps]
    assert not missing, "pyproject.toml [project].dependencies lacks: " + "; ".join(missing)


# Exact pins where we rely on more than the public API (Dagster's internals in
# defs/dagster_internals.py) or where the guide fixes the build (torch's CPU wheel).
EXACT = {"dagster", "dagster-webserver", "dagster-postgres", "dagster-shared", "torch"}


def test_declared_ranges_hold_the_lock() -> None:
    pins = locked()
    wrong = []
    for name, req in declared().items():
        spec = SpecifierSet(re.split(r"[;\s#]", req.removeprefix(name), maxsplit=1)[0].strip())
        if name not in pins:
            wrong.append(f"{req}: not in requirements.lock")
        elif not str(spec):
            wrong.append(f"{req}: no version range")
        elif pins[name] not in spec:
            wrong.append(f"{req}: the lock pins {pins[name]}, outside the range")
        elif (name in EXACT) != (str(spec) == f"=={pins[name]}"):
            wrong.append(f"{req}: {'pin exactly' if name in EXACT else 'declare a range'}")
    assert not wrong, "; ".join(wrong)


def test_torch_pin_has_no_local_version_label() -> None:
    assert declared()["torch"] == "torch==2.13.0"
    assert locked()["torch"] == "2.13.0"
