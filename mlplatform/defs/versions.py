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
    defining assets does not pay for importing torch or every sklearn estimator)."""
    if isinstance(module, ModuleType):
        return inspect.getsource(module)
    found = importlib.util.find_spec(module)
    if found is None or found.origin is None:
        raise ModuleNotFoundError(module)
    return Path(found.origin).read_text(encoding="utf-8")


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
