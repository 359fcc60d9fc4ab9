"""Shadow candidates in a serving process: which bundle each project shadows (verified like
production before use) and the shadow predictions of logged requests.

``ShadowBundles`` follows ``mlplatform.shadow``'s files: the log writer asks it, once per flush,
for the folder of the project's shadow bundle; a bundle is loaded and fully verified once per
attachment, and one that fails verification is never used (the error shows in the API).
``shadow_columns`` runs where the log's batch is parsed (the writer thread or its worker
process, never the request path): it validates each logged request against the shadow
bundle's schema and predicts all of a batch's rows in one run.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlplatform.bundles.format import BUNDLE_ID, Bundle, BundleError, load
from mlplatform.shadow import ShadowAttachment, read_shadow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ShadowState:
    """The project's attachment and whether its bundle may be used (``error`` says why not)."""

    attachment: ShadowAttachment | None
    error: str | None = None


class ShadowBundles:
    """The verified shadow bundle of each project, following the attachment files."""

    def __init__(self, projects: Iterable[str], home: Path, bundles_dir: Path):
        self.home = home
        self.bundles_dir = bundles_dir
        self._states: dict[str, ShadowState] = {p: ShadowState(None) for p in projects}
        self._lock = threading.Lock()

    def state(self, project: str) -> ShadowState:
        """Read the project's attachment; verify a newly attached bundle (once)."""
        attachment = read_shadow(self.home, project)
        with self._lock:
            known = self._states.get(project, ShadowState(None))
            if attachment == known.attachment:
                return known
            found = ShadowState(attachment, self._refusal(project, attachment))
            self._states[project] = found
        return found

    def folder(self, project: str) -> Path | None:
        """The folder of the project's usable shadow bundle, or None."""
        found = self.state(project)
        if found.attachment is None or found.error is not None:
            return None
        return self.bundles_dir / found.attachment.bundle_id

    def _refusal(self, project: str, attachment: ShadowAttachment | None) -> str | None:
        if attachment is None:
            return None
        bundle_id = attachment.bundle_id
        try:
            if not BUNDLE_ID.match(bundle_id):
                raise BundleError(f"{bundle_id!r} is not a bundle id")
            bundle = load(self.bundles_dir / bundle_id)
            if bundle.manifest.get("project") != project:
                raise BundleError(f"it belongs to {bundle.manifest.get('project')!r}")
        except Exception as exc:  # verification, I/O or onnxruntime: never used
            message = f"shadow bundle {bundle_id} refused: {exc}".replace(
                str(self.bundles_dir), "bundles"
            )
            log.error("%s: %s", project, message)
            return message
        remember(self.bundles_dir / bundle_id, bundle)
        log.info("%s: shadow bundle %s attached by %s", project, bundle_id, attachment.actor)
        return None


# Loaded shadow bundles of this process (the writer's worker process loads its own copy).
_LOADED: dict[Path, tuple[Bundle, Any, Any]] = {}
KEEP = 4


def remember(folder: Path, bundle: Bundle) -> tuple[Bundle, Any, Any]:
    """Keep a loaded shadow bundle (the last ``KEEP`` of this process)."""
    while len(_LOADED) >= KEEP:
        _LOADED.pop(next(iter(_LOADED)))
    found = _LOADED[folder] = _compiled(bundle)
    return found


def _compiled(bundle: Bundle) -> tuple[Bundle, Any, Any]:
    from mlplatform.serving.predictor import FastPredictor
    from mlplatform.serving.rows import PredictValidator

    return bundle, PredictValidator(bundle.schema), FastPredictor(bundle)


def shadow_columns(folder: Path, bodies: list[tuple[bytes, int]]) -> dict[str, list[Any]]:
    """``shadow_bundle_id``, ``shadow_label``, ``shadow_value`` for the rows of logged
    requests (body, row count): the shadow bundle's predictions, None for the rows of a
    request it cannot take."""
    found = _LOADED.get(folder)
    if found is None:
        found = remember(folder, load(folder))  # verified again in this process
    bundle, validator, predictor = found
    rows: list[dict[str, Any]] = []
    taken: list[bool] = []
    for body, count in bodies:
        try:
            valid = validator.rows(body)
        except Exception:  # the shadow's schema refuses what production took
            valid = None
        ok = valid is not None and len(valid) == count
        taken.append(ok)
        if ok:
            rows += valid
    predictions = iter(predictor.predict_rows(rows))
    out: dict[str, list[Any]] = {"shadow_bundle_id": [], "shadow_label": [], "shadow_value": []}
    for (_, count), ok in zip(bodies, taken, strict=True):
        for _ in range(count):
            p = next(predictions) if ok else {}
            out["shadow_bundle_id"].append(bundle.bundle_id if ok else None)
            out["shadow_label"].append(p.get("label"))
            out["shadow_value"].append(p.get("value"))
    return out
