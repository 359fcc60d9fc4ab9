"""Which candidate bundle a project runs in shadow: one small JSON file per project under the
home (``shadow/<project>.json``), written atomically by the CLI or the API and read by every
serving process of that home (as they share the prediction log).

A shadow bundle predicts beside production for logged requests only, off the response path;
its predictions are recorded in the prediction log (``shadow_bundle_id``, ``shadow_label``,
``shadow_value``) and never returned.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

SHADOW_FOLDER = "shadow"


@dataclass(frozen=True)
class ShadowAttachment:
    """A candidate attached in shadow: which bundle, by whom, when (ISO UTC)."""

    project: str
    bundle_id: str
    actor: str
    attached_at: str


def shadow_file(home: Path, project: str) -> Path:
    return home / SHADOW_FOLDER / f"{project}.json"


def read_shadow(home: Path, project: str) -> ShadowAttachment | None:
    """The project's shadow attachment, or None (also when the file cannot be read)."""
    try:
        data = json.loads(shadow_file(home, project).read_text("utf-8"))
        return ShadowAttachment(**{k: str(data[k]) for k in ShadowAttachment.__annotations__})
    except (OSError, ValueError, KeyError, TypeError):
        return None


def attach_shadow(home: Path, project: str, bundle_id: str, actor: str) -> ShadowAttachment:
    """Attach ``bundle_id`` in shadow (replaces an earlier one); written atomically."""
    found = ShadowAttachment(project, bundle_id, actor, dt.datetime.now(dt.UTC).isoformat())
    path = shadow_file(home, project)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex}.tmp"
    try:
        tmp.write_text(json.dumps(asdict(found)), "utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return found


def detach_shadow(home: Path, project: str) -> bool:
    """Stop the project's shadow; False when there was none."""
    try:
        shadow_file(home, project).unlink()
    except FileNotFoundError:
        return False
    return True
