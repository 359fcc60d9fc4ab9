"""The published bundles on disk: list and find them (used by serving and the CLI alike)."""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path
from typing import Any

from mlplatform.bundles.format import BUNDLE_ID, MANIFEST, bundle_id_of, published_at

log = logging.getLogger(__name__)


class BundleCatalog:
    """Manifests of the published bundles (``bundles_dir/<id>/manifest.json``).

    Re-reads only when the directory listing changes; bundles are immutable, so a manifest
    read once stays valid. Folders whose manifest does not match their name are skipped.
    """

    def __init__(self, bundles_dir: Path):
        self.bundles_dir = bundles_dir
        self._listing: tuple[str, ...] | None = None
        self._manifests: dict[str, dict[str, Any]] = {}
        self._rejected: set[str] = set()
        self._lock = threading.Lock()

    def _read(self, name: str) -> dict[str, Any] | None:
        try:
            manifest = json.loads((self.bundles_dir / name / MANIFEST).read_text("utf-8"))
        except (OSError, ValueError) as exc:
            log.warning("skipping bundle folder %s: %s", name, exc)
            return None
        if not isinstance(manifest, dict) or not (
            manifest.get("bundle_id") == name == bundle_id_of(manifest)
        ):
            log.warning("skipping bundle folder %s: manifest does not match its id", name)
            return None
        return manifest

    def manifests(self) -> dict[str, dict[str, Any]]:
        """bundle id -> manifest of every published bundle."""
        try:
            names = tuple(sorted(n for n in os.listdir(self.bundles_dir) if BUNDLE_ID.match(n)))
        except OSError:
            names = ()
        with self._lock:
            if names != self._listing:
                # A new dict each time: callers may iterate the previous one meanwhile.
                manifests = {k: v for k, v in self._manifests.items() if k in names}
                for name in names:
                    if name not in manifests and name not in self._rejected:
                        manifest = self._read(name)
                        if manifest is None:
                            self._rejected.add(name)
                        else:
                            manifests[name] = manifest
                self._rejected &= set(names)
                self._manifests = manifests
                self._listing = names
            return self._manifests

    def get(self, bundle_id: str) -> dict[str, Any] | None:
        """The manifest of one published bundle, or None."""
        if not BUNDLE_ID.match(bundle_id):
            return None
        return self.manifests().get(bundle_id)

    def of_project(self, project: str) -> list[dict[str, Any]]:
        """Published bundles of a project, newest first; each a copy of its manifest with
        ``created_at`` = when it was published."""
        found = []
        for m in self.manifests().values():
            if m.get("project") == project:
                try:
                    when = published_at(self.bundles_dir / m["bundle_id"])
                except OSError:  # removed meanwhile
                    continue
                found.append({**m, "created_at": when})
        return sorted(found, key=lambda m: (m["created_at"], m["bundle_id"]))[::-1]
