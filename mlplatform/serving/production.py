"""The production bundle each project serves (hot-swapped), and which bundle files may be served.

``ProductionService`` keeps, per project, an immutable ``ProjectState`` holding the loaded
``Bundle``. A background thread polls the ledger's production pointer; on a change it loads
and fully verifies the new bundle *first*, then replaces the state in one assignment.
Requests read the state once, so a request that started on the old bundle finishes on it and
no request sees a half-loaded bundle. A bundle that fails verification is never swapped in:
the old one keeps serving and the error shows in ``/healthz``.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from mlplatform.bundles.format import (
    BUNDLE_ID,
    MANIFEST,
    Bundle,
    BundleError,
    bundle_id_of,
    load,
)
from mlplatform.digests import file_sha256
from mlplatform.ledger import Ledger

log = logging.getLogger(__name__)
SwapHook = Callable[[str, str | None, str | None], None]
Signature = tuple[int, int, int, int]


def ledger_unavailable(exc: BaseException) -> str:
    """One line for an answer or a log: "ledger unavailable: <the driver's first line>"."""
    cause = getattr(exc, "orig", None) or exc  # SQLAlchemy wraps the driver's error
    lines = [line.strip() for line in str(cause).splitlines() if line.strip()]
    reason = lines[0] if lines else type(cause).__name__
    return f"ledger unavailable: {reason[:300]}"


class VerifiedFiles:
    """Whether the files of a published bundle may be served: each file's sha256 is checked
    against the manifest, and checked again whenever the file's size, times or inode change."""

    def __init__(self, bundles_dir: Path):
        self.bundles_dir = bundles_dir
        self._checked: dict[Path, tuple[Signature, str | None]] = {}
        self._lock = threading.Lock()

    def refusal(self, manifest: dict[str, Any]) -> str | None:
        """Why the bundle must not be served now (one line), or None when every file checks."""
        bundle_id = str(manifest["bundle_id"])
        root = self.bundles_dir / bundle_id
        files: dict[str, str] = manifest.get("files", {})
        for rel in [MANIFEST, *sorted(files)]:
            problem = self._check(root / rel, rel, bundle_id, files.get(rel))
            if problem is not None:
                return f"bundle {bundle_id} refused: {problem}"
        return None

    def _check(self, path: Path, rel: str, bundle_id: str, digest: str | None) -> str | None:
        try:
            st = path.stat()
        except OSError:
            return f"{rel}: listed in the manifest but missing"
        signature = (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
        with self._lock:
            known = self._checked.get(path)
        if known is not None and known[0] == signature:
            return known[1]
        problem = None
        try:
            if digest is None:  # the manifest: its content must hash to its bundle id
                manifest = json.loads(path.read_text("utf-8"))
                if not (manifest.get("bundle_id") == bundle_id == bundle_id_of(manifest)):
                    problem = f"{rel}: manifest content does not match its bundle id"
            elif file_sha256(path) != digest:
                problem = f"{rel}: sha256 mismatch (the file was altered)"
        except (OSError, ValueError, AttributeError) as exc:
            problem = f"{rel}: unreadable ({type(exc).__name__})"
        if problem is not None:
            log.error("bundle %s refused: %s", bundle_id, problem)
        with self._lock:
            self._checked[path] = (signature, problem)
        return problem


@dataclass(frozen=True)
class ProjectState:
    """What one project serves now; replaced as a whole, never mutated."""

    bundle: Bundle | None = None
    ledger_bundle_id: str | None = None  # what the ledger's pointer says
    error: str | None = None
    checked_at: dt.datetime | None = None
    failed_bundle_id: str | None = None
    failed_at: float = 0.0


class ProductionService:
    """The production bundle of every project, kept in step with the ledger by a thread."""

    def __init__(
        self,
        projects: Iterable[str],
        ledger: Ledger,
        bundles_dir: Path,
        *,
        poll_seconds: float = 1.0,
        retry_failed_seconds: float = 30.0,
        on_swap: SwapHook | None = None,
        on_refused: Callable[[str], None] | None = None,
    ):
        self.ledger = ledger
        self.bundles_dir = bundles_dir
        self.poll_seconds = poll_seconds
        self.retry_failed_seconds = max(retry_failed_seconds, poll_seconds)
        self._on_swap = on_swap
        self._on_refused = on_refused
        self._states: dict[str, ProjectState] = {p: ProjectState() for p in projects}
        self._lock = threading.Lock()  # serialises writers; readers never take it
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def projects(self) -> list[str]:
        return list(self._states)

    def state(self, project: str) -> ProjectState:
        """The project's current state (checks the ledger once if never done)."""
        state = self._states[project]
        if state.checked_at is None:
            self.refresh(project)
            state = self._states[project]
        return state

    def current(self, project: str) -> Bundle | None:
        """The bundle to serve now. Read it once per request and use that object throughout."""
        return self.state(project).bundle

    def _short(self, message: str) -> str:
        return message.replace(str(self.bundles_dir), "bundles")

    def refresh(self, project: str, preloaded: Bundle | None = None) -> ProjectState:
        """Follow the ledger's pointer: load + verify a new bundle, then swap it in."""
        with self._lock:
            state = self._states[project]
            now = dt.datetime.now(dt.UTC)
            try:
                pointer = self.ledger.production(project)
            except Exception as exc:
                message = ledger_unavailable(exc)
                if state.error is None or not state.error.startswith("ledger"):
                    log.error("%s: %s", project, message)
                new = replace(state, error=message, checked_at=now)
                self._states[project] = new
                return new
            target = pointer.to_bundle if pointer is not None else None
            current = state.bundle.bundle_id if state.bundle is not None else None
            if target == current:
                new = replace(state, ledger_bundle_id=target, error=None, checked_at=now)
            elif (
                target == state.failed_bundle_id
                and time.monotonic() - state.failed_at < self.retry_failed_seconds
            ):
                new = replace(state, ledger_bundle_id=target, checked_at=now)
            elif target is None:
                new = ProjectState(checked_at=now)
            else:
                new = self._swap(project, state, target, preloaded, now)
            self._states[project] = new
            if new.bundle is not state.bundle and self._on_swap is not None:
                self._on_swap(project, _id(state.bundle, None), _id(new.bundle, None))
        return new

    def _swap(
        self,
        project: str,
        state: ProjectState,
        target: str,
        preloaded: Bundle | None,
        now: dt.datetime,
    ) -> ProjectState:
        try:
            if preloaded is not None and preloaded.bundle_id == target:
                bundle = preloaded
            elif not BUNDLE_ID.match(target):
                raise BundleError(f"{target!r} is not a bundle id")
            else:
                bundle = load(self.bundles_dir / target)
            if bundle.manifest.get("project") != project:
                raise BundleError(f"bundle {target} belongs to {bundle.manifest.get('project')!r}")
        except Exception as exc:  # verification, I/O or onnxruntime: keep the old bundle
            message = self._short(f"production bundle {target} refused: {exc}")
            log.error("%s: %s; still serving %s", project, message, _id(state.bundle))
            if self._on_refused is not None:
                self._on_refused(project)
            return replace(
                state,
                ledger_bundle_id=target,
                error=message,
                checked_at=now,
                failed_bundle_id=target,
                failed_at=time.monotonic(),
            )
        log.info("%s: now serving bundle %s (was %s)", project, target, _id(state.bundle))
        return ProjectState(bundle=bundle, ledger_bundle_id=target, checked_at=now)

    def refresh_all(self) -> None:
        for project in self.projects:
            self.refresh(project)

    def _run(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            for project in self.projects:
                if self._stop.is_set():
                    return
                try:
                    self.refresh(project)
                except Exception:  # never let the watcher die
                    log.exception("%s: refreshing the production bundle failed", project)

    def start(self) -> None:
        """Start the polling thread (idempotent)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="production-watcher", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    @property
    def watching(self) -> bool:
        return self._thread is not None and self._thread.is_alive()


def _id(bundle: Bundle | None, none: str | None = "nothing") -> str | None:
    return bundle.bundle_id if bundle is not None else none
