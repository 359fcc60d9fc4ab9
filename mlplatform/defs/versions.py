"""Code versions: a hash of the step code and the spec sections an asset depends on."""

from __future__ import annotations

import hashlib
import inspect
import json
from types import ModuleType

from mlplatform.spec import ProjectSpec


def code_version(
    spec: ProjectSpec, modules: list[ModuleType], sections: list[str], extra: object = None
) -> str:
    """Changes when the given modules' source, the spec sections or ``extra`` change."""
    h = hashlib.sha256()
    for module in modules:
        h.update(inspect.getsource(module).encode())
    for name in sections:
        h.update(json.dumps(spec.section(name), sort_keys=True, default=str).encode())
    h.update(json.dumps(extra, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]
