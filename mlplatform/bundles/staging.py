"""Build folders under ``staging/``: one per bundle build, locked while its process lives.

A build killed with ``kill -9`` leaves its folder behind; the next build removes every folder
whose lock no live process holds. The lock is an ``flock`` on ``<folder>/.lock``: the kernel
drops it when its process dies, whatever the pid namespace (run containers share the folder).
Folders without a lock file (left by older versions) are removed once they are an hour old.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import IO

log = logging.getLogger(__name__)

LOCK = ".lock"
PREFIX = "build-"
UNLOCKED_STALE_AFTER_S = 3600.0
_held: dict[Path, IO[str]] = {}  # build folder -> its open lock file, locked by this process


def open_build(staging_root: Path, name: str = "") -> Path:
    """A new build folder ``build-<name>-*`` under ``staging_root``, locked until
    :func:`close_build` (or the end of this process). Dead builds' folders are removed first."""
    staging_root.mkdir(parents=True, exist_ok=True)
    remove_dead_builds(staging_root)
    build = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{name}-" if name else PREFIX, dir=staging_root))
    # locked under another name, then renamed: ``.lock`` never exists unlocked
    pending = build / f"{LOCK}.{os.getpid()}"
    handle = pending.open("a", encoding="utf-8")
    fcntl.flock(handle, fcntl.LOCK_EX)
    handle.write(f"pid {os.getpid()}\n")
    handle.flush()
    os.rename(pending, build / LOCK)
    _held[build] = handle
    return build


def close_build(build: Path) -> None:
    """Remove a build folder of this process and release its lock."""
    shutil.rmtree(build, ignore_errors=True)
    handle = _held.pop(build, None)
    if handle is not None:
        handle.close()


def remove_dead_builds(staging_root: Path) -> list[Path]:
    """Remove the folders under ``staging_root`` that no live build holds; return them."""
    removed = []
    for folder in sorted(p for p in staging_root.iterdir() if p.is_dir() and not p.is_symlink()):
        if _remove_if_dead(folder):
            removed.append(folder)
    if removed:
        log.info("removed %d build folder(s) of dead builds under %s", len(removed), staging_root)
    return removed


def _remove_if_dead(folder: Path) -> bool:
    lock = folder / LOCK
    try:
        handle = lock.open("r+", encoding="utf-8")  # never creates it
    except FileNotFoundError:  # no lock file: an older version's folder, or being created
        try:
            age = time.time() - folder.stat().st_mtime
        except FileNotFoundError:
            return False
        if age < UNLOCKED_STALE_AFTER_S:
            return False
        shutil.rmtree(folder, ignore_errors=True)
        return True
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # a live build holds it
        shutil.rmtree(folder, ignore_errors=True)
        return True
