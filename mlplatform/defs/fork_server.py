"""Warm run workers: one process per instance that has already imported the code location and
the instance's storage modules, and forks a child per run.

A run launched the default way pays a fresh interpreter: importing ``mlplatform.definitions``,
pandas and pyarrow, opening the instance (sqlalchemy, alembic) — seconds before its first step.
This server pays that once (:func:`warm`), then answers requests on a unix socket, one JSON
line each:

- ``{"op": "ping"}`` -> ``{"ok": true, "pid": ...}``;
- ``{"op": "launch", "run_id", "instance_ref", "origin", "job", "snapshot"}`` (the run's
  code origin, job name and job snapshot id) -> ``{"pid": CHILD}`` once a forked
  child executes the run as ``dagster api execute_run`` would, or ``{"stale": why}`` when this
  server's definitions may not be what a fresh process would load — a source file of a loaded
  module outside the Python installation or a project spec changed since it started (a job
  snapshot does not cover a spec's values), or its job differs from the run's snapshot — so
  the launcher restarts it; or ``{"error": why}``.

The server is single-threaded (forking is safe), keeps no open connection (it opens the
instance only to warm up; each child opens its own), reaps its children, and stops on SIGTERM,
SIGINT or when its parent (the daemon that started it) is gone, after waiting a little for the
runs of its children to end. Started by :mod:`mlplatform.defs.fork_launcher`:
``python -m mlplatform.defs.fork_server SOCKET``.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import signal
import socket
import sys
import sysconfig
import time
from pathlib import Path
from types import FrameType

import dagster as dg

from mlplatform.defs import dagster_internals as di

CODE_LOCATION = "mlplatform.definitions"
WARM_MODULES = (
    CODE_LOCATION,
    "pandas",
    "pyarrow",
    "pyarrow.parquet",
    "pyarrow.csv",
    "pyarrow.dataset",
    # what a raw + features run imports on its way (steps import inside their assets)
    "mlplatform.steps.ingest",
    "mlplatform.steps.features",
    "mlplatform.columnar.csv_stream",
    "mlplatform.columnar.kernels",
    "mlplatform.defs.orphaned_runs",
    *di.EXECUTION_MODULES,
)
CHILD_WAIT_SECONDS = 8.0
"""On stop: how long the server waits for its children's runs to end before it exits."""


def warm() -> None:
    """Import what every run needs and open (then dispose) the instance once, so that its
    storage modules (sqlalchemy, alembic) are loaded before any fork."""
    import importlib

    for name in WARM_MODULES:
        importlib.import_module(name)
    if os.environ.get("DAGSTER_HOME"):
        with dg.DagsterInstance.get() as instance:
            instance.get_runs(limit=1)


def source_files() -> list[Path]:
    """What a fresh import of the code location would read: the source of every loaded
    module outside the Python installation, and the project specs."""
    installed = {
        Path(p).resolve()
        for p in {sys.prefix, sys.base_prefix, *sysconfig.get_paths().values()}
        if p
    }
    files = set()
    for module in list(sys.modules.values()):
        name = getattr(module, "__file__", None)
        if not name:
            continue
        path = Path(name).resolve()
        if not any(path.is_relative_to(root) for root in installed):
            files.add(path)
    from mlplatform.settings import load_settings

    projects = load_settings().projects_dir
    if projects.is_dir():
        files.update(p.resolve() for p in projects.iterdir() if p.suffix in (".yaml", ".yml"))
    return sorted(files)


def fingerprint(files: list[Path]) -> dict[str, tuple[int, int]]:
    """Modification time and size of each file (-1 when missing)."""
    found = {}
    for path in files:
        try:
            stat = path.stat()
            found[str(path)] = (stat.st_mtime_ns, stat.st_size)
        except OSError:
            found[str(path)] = (-1, -1)
    return found


class Sources:
    """The files this server's definitions were loaded from, as they were after warming."""

    def __init__(self) -> None:
        self.files = source_files()
        self.seen = fingerprint(self.files)
        self.projects = self._spec_names()

    @staticmethod
    def _spec_names() -> set[str]:
        from mlplatform.settings import load_settings

        folder = load_settings().projects_dir
        if not folder.is_dir():
            return set()
        return {p.name for p in folder.iterdir() if p.suffix in (".yaml", ".yml")}

    def changed(self) -> str:
        """The first file changed since warming (a spec added or removed counts); ""."""
        now = fingerprint(self.files)
        for name, stamp in now.items():
            if self.seen.get(name) != stamp:
                return name
        added = self._spec_names() - self.projects
        return f"new spec {sorted(added)[0]}" if added else ""


def stale_reason(
    origin: di.JobPythonOrigin, job_name: str, wanted: str, known: dict[str, str]
) -> str:
    """Why this process must not execute a run of ``job_name`` whose job snapshot (or the
    parent of its subset) is ``wanted``: its own definition of the job differs; "" when not.
    ``known`` caches this server's job snapshot ids by origin."""
    key = origin.get_id()
    if key not in known:
        # also leaves the job resolved in this process: every forked child starts with it
        known[key] = di.recon_job_from_origin(origin).get_definition().get_job_snapshot_id()
    if known[key] != wanted:
        return (
            f"job {job_name}: the run's snapshot {wanted[:12]} is not this warm server's "
            f"{known[key][:12]} (definitions changed since it started)"
        )
    return ""


def execute_child(run_id: str, ref: object) -> int:
    """In a forked child: open the instance and execute the run; the exit code."""
    signal.signal(signal.SIGINT, signal.default_int_handler)  # until Dagster's own handler
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        with di.capture_interrupts(), dg.DagsterInstance.from_ref(ref) as instance:  # type: ignore[arg-type]
            return di.execute_run_body(run_id, instance)
    except BaseException as exc:
        print(f"warm run worker: run {run_id}: {exc!r}", file=sys.stderr)
        return 1


class Server:
    """The accept loop, its children and its stop conditions."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.parent = os.getppid()
        self.children: set[int] = set()
        self.stopping = False
        self.known: dict[str, str] = {}
        self.listener: socket.socket | None = None
        self.sources: Sources | None = None

    def stop(self, _signum: int, _frame: FrameType | None) -> None:
        self.stopping = True

    def reap(self) -> None:
        for pid in list(self.children):
            with contextlib.suppress(ChildProcessError):
                done, _ = os.waitpid(pid, os.WNOHANG)
                if done == 0:
                    continue
            self.children.discard(pid)

    def launch(self, request: dict[str, object]) -> dict[str, object]:
        """Fork a child for the run unless this server's definitions are stale for it (the
        launcher sends the run's code origin and job snapshot id: no instance is opened
        here, the child opens its own)."""
        run_id, ref = str(request["run_id"]), dg.deserialize_value(str(request["instance_ref"]))
        origin = dg.deserialize_value(str(request["origin"]), di.JobPythonOrigin)
        changed = self.sources.changed() if self.sources is not None else ""
        why = (
            f"{changed} changed since the warm server started"
            if changed
            else stale_reason(origin, str(request["job"]), str(request["snapshot"]), self.known)
        )
        if why:
            return {"stale": why}
        sys.stdout.flush()
        sys.stderr.flush()
        gc.freeze()  # children neither walk nor copy what the server holds when they collect
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            code = 1
            try:
                if self.listener is not None:
                    self.listener.close()
                code = execute_child(run_id, ref)
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        self.children.add(pid)
        return {"pid": pid}

    def answer(self, conn: socket.socket) -> None:
        with conn, conn.makefile("rw", encoding="utf-8") as stream:
            line = stream.readline()
            try:
                request = json.loads(line)
                if request.get("op") == "ping":
                    reply: dict[str, object] = {"ok": True, "pid": os.getpid()}
                elif request.get("op") == "launch":
                    reply = self.launch(request)
                else:
                    reply = {"error": f"unknown request {line.strip()[:80]!r}"}
            except Exception as exc:
                reply = {"error": f"{type(exc).__name__}: {exc}"}
            stream.write(json.dumps(reply) + "\n")
            stream.flush()

    def serve(self) -> None:
        with socket.socket(socket.AF_UNIX) as listener:
            listener.bind(str(self.path))
            listener.listen(16)
            listener.settimeout(0.5)
            self.listener = listener
            while not self.stopping and os.getppid() == self.parent:
                self.reap()
                try:
                    conn, _ = listener.accept()
                except TimeoutError:
                    continue
                except InterruptedError:
                    continue
                conn.settimeout(None)
                self.answer(conn)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self.wait_children()

    def wait_children(self) -> None:
        """Let the children end their runs (they got the same stop signal), then go."""
        deadline = time.monotonic() + CHILD_WAIT_SECONDS
        while self.children and time.monotonic() < deadline:
            self.reap()
            time.sleep(0.05)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m mlplatform.defs.fork_server SOCKET", file=sys.stderr)
        return 2
    server = Server(Path(argv[0]))
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, server.stop)
    warm()
    server.sources = Sources()
    server.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
