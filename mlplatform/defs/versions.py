"""Code versions: a hash of the step code and the spec sections an asset depends on."""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import json
from pathlib import Path
from types import ModuleType

from mlplatform.spec import ProjectSpec


def module_source(module: ModuleType | str) -> str:
    """A module's source; a dotted name is read from its file without importing it (so
    defining assets does not pay for importing torch or every sklearn estimator). A package
    named by its dotted name is every file in it: its modules and its data (templates)."""
    if isinstance(module, ModuleType):
        return inspect.getsource(module)
    found = importlib.util.find_spec(module)
    if found is None or found.origin is None:
        raise ModuleNotFoundError(module)
    origin = Path(found.origin)
    if not found.submodule_search_locations:
        return origin.read_text(encoding="utf-8")
    files = sorted(
        p for p in origin.parent.rglob("*") if p.is_file() and "__pycache__" not in p.parts
    )
    return "".join(
        f"{p.relative_to(origin.parent)}\n{p.read_text(encoding='utf-8')}" for p in files
    )


def code_version(
    spec: ProjectSpec, modules: list[ModuleType | str], sections: list[str], extra: object = None
) -> str:
    """Changes when the given modules' source, the spec sections or ``extra`` change."""
    h = hashlib.sha256()
    for module in modules:
        h.update(module_source(module).encode())
    for name in sections:
        h.update(json.dumps(spec.section(name), sort_keys=True, default=str).encode())
    h.update(json.dumps(extra, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]
