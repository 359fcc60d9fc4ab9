"""A run launcher that hands each run to a warm run worker (:mod:`mlplatform.defs.fork_server`).

:class:`ForkRunLauncher` is Dagster's :class:`~dagster.DefaultRunLauncher` with a faster first
choice: the daemon (or whoever launches) starts one warm server per instance on first use (a
unix socket under DAGSTER_HOME; a file lock so two launchers never start two), asks it to fork
a child for the run, and records the child's pid in the run's tags (:data:`PID_TAG`, as
in-process runs do, so orphan marking and ``mlplatform ui``'s stop find it). When the server's
definitions are not those of the run's snapshot it is restarted once; when it still differs,
cannot start or fails, the run is launched the default way (the code server's fresh process),
and the run's event log says why. ``terminate`` interrupts the child (the run ends CANCELED);
``check_run_worker_health`` reports a run whose process is gone, so run monitoring fails it.

Instance yaml: ``run_launcher: {module: mlplatform.defs.fork_launcher, class: ForkRunLauncher}``.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import dagster as dg

from mlplatform import procfs
from mlplatform.defs import dagster_internals as di
from mlplatform.defs.orphaned_runs import PID_TAG, why_orphaned

WARM_TAG = "mlplatform/run_worker"
"""Run tag: ``warm`` on runs executed by a child of the warm server."""
SOCKET_NAME = "run-workers.sock"
SERVER_MODULE = "mlplatform.defs.fork_server"
START_SECONDS = 120.0
"""How long a warm server may take to import and warm before the launcher gives up on it."""
RETRY_SECONDS = 60.0
"""After a warm server failed to start, runs are launched the default way this long."""
MAX_SOCKET_PATH = 100  # sun_path holds 108 bytes


class WarmServerError(Exception):
    """The warm server could not be started or did not answer."""


def socket_path(dagster_home: Path) -> Path:
    """The warm server's socket: under DAGSTER_HOME, or (a path too long for a unix socket)
    in the temp folder, named for the home."""
    path = dagster_home / SOCKET_NAME
    if len(str(path)) <= MAX_SOCKET_PATH:
        return path
    digest = hashlib.sha256(str(dagster_home.resolve()).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"mlplatform-runs-{digest}.sock"


def ask(path: Path, request: Mapping[str, object], timeout: float = 60.0) -> dict[str, Any]:
    """One request to the warm server at ``path``; its JSON answer."""
    try:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(timeout)
            sock.connect(str(path))
            sock.sendall((json.dumps(request) + "\n").encode())
            with sock.makefile("r", encoding="utf-8") as stream:
                line = stream.readline()
    except OSError as exc:
        raise WarmServerError(f"warm run server at {path}: {exc}") from exc
    if not line:
        raise WarmServerError(f"warm run server at {path} closed without an answer")
    answer = json.loads(line)
    if not isinstance(answer, dict):
        raise WarmServerError(f"warm run server at {path} answered {line.strip()[:80]!r}")
    return answer


def answers(path: Path) -> bool:
    try:
        return bool(ask(path, {"op": "ping"}, timeout=2.0).get("ok"))
    except (WarmServerError, ValueError):
        return False


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def worker_alive(pid: int) -> bool:
    """A run's warm worker is alive: a live, not yet reaped process forked from a warm
    server (it has the server's command line; not another process that got the pid)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    if stat.rsplit(")", 1)[-1].split()[0] in ("Z", "X"):
        return False
    return SERVER_MODULE in procfs.cmdline(pid)


class ForkRunLauncher(dg.DefaultRunLauncher):
    """Launch runs on warm forked run workers; the default launch as the fallback."""

    def __init__(self, inst_data: di.ConfigurableClassData | None = None) -> None:
        super().__init__(inst_data=inst_data)
        self._server: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self._broken: tuple[float, str] = (0.0, "")  # (until when, why) a start failed

    @classmethod
    def from_config_value(
        cls, inst_data: di.ConfigurableClassData, config_value: Mapping[str, Any]
    ) -> ForkRunLauncher:
        return cls(inst_data=inst_data)

    @property
    def dagster_home(self) -> Path:
        return Path(self._instance.root_directory)

    def _ensure_server(self, restart: bool = False) -> Path:
        """The socket of a warm server for this instance, started if none answers."""
        path = socket_path(self.dagster_home)
        with self._lock, file_lock(self.dagster_home / "run-workers.lock"):
            if restart:
                self._stop_server(path)
            elif answers(path):
                return path
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            self._reap()
            self._server = subprocess.Popen(
                [sys.executable, "-m", SERVER_MODULE, str(path)],
                stdin=subprocess.DEVNULL,
                env={**os.environ, "DAGSTER_HOME": str(self.dagster_home)},
            )
            deadline = time.monotonic() + START_SECONDS
            while not answers(path):
                if self._server.poll() is not None:
                    raise WarmServerError(
                        f"warm run server exited with code {self._server.returncode}"
                    )
                if time.monotonic() > deadline:
                    raise WarmServerError(f"warm run server not up after {START_SECONDS:.0f} s")
                time.sleep(0.05)
            return path

    def _stop_server(self, path: Path) -> None:
        """Stop the server answering at ``path`` (its running children finish their runs)."""
        with contextlib.suppress(WarmServerError, ValueError):
            pid = ask(path, {"op": "ping"}, timeout=2.0).get("pid")
            if isinstance(pid, int):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while path.exists() and time.monotonic() < deadline:
            self._reap()
            time.sleep(0.05)
        self._reap()

    def _reap(self) -> None:
        if self._server is not None and self._server.poll() is not None:
            self._server = None

    def _hand_over(self, run: dg.DagsterRun) -> tuple[int | None, str]:
        """The pid of the warm child executing ``run``, or None and why not."""
        if run.job_code_origin is None or run.job_snapshot_id is None:
            return None, "the run has no code origin or job snapshot"
        lineage = self._instance.get_job_snapshot(run.job_snapshot_id).lineage_snapshot
        request = {
            "op": "launch",
            "run_id": run.run_id,
            "instance_ref": dg.serialize_value(self._instance.get_ref()),
            "origin": dg.serialize_value(run.job_code_origin),
            "job": run.job_name,
            # a subset's snapshot (an asset selection) names the whole job's as its parent
            "snapshot": lineage.parent_snapshot_id if lineage else run.job_snapshot_id,
        }
        until, broken = self._broken
        if time.monotonic() < until:
            return None, f"{broken}; retried after {RETRY_SECONDS:.0f} s"
        why = ""
        for attempt in range(2):
            try:
                path = self._ensure_server(restart=attempt > 0)
            except WarmServerError as exc:
                self._broken = (time.monotonic() + RETRY_SECONDS, str(exc))
                return None, str(exc)
            try:
                answer = ask(path, request)
            except WarmServerError as exc:
                return None, str(exc)
            if "pid" in answer:
                return int(answer["pid"]), ""
            why = str(answer.get("stale") or answer.get("error"))
            if "stale" not in answer:
                break
        return None, why

    def launch_run(self, context: di.LaunchRunContext) -> None:
        run = context.dagster_run
        pid, why = self._hand_over(run)
        if pid is None:
            self._instance.report_engine_event(
                f"Warm run worker not used ({why}); launching the run the default way.",
                run,
                cls=self.__class__,
            )
            super().launch_run(context)
            return
        self._instance.add_run_tags(run.run_id, {PID_TAG: str(pid), WARM_TAG: "warm"})

    def terminate(self, run_id: str) -> bool:
        run = self._instance.get_run_by_id(run_id)
        if run is None or run.tags.get(WARM_TAG) != "warm":
            return super().terminate(run_id)
        if run.is_finished:
            return False
        self._instance.report_run_canceling(run)
        pid = int(run.tags[PID_TAG])
        if not worker_alive(pid):
            return False
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGINT)  # Dagster's interrupt: the run ends CANCELED
        return True

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: dg.DagsterRun) -> di.CheckRunHealthResult:
        if run.tags.get(WARM_TAG) == "warm":
            pid = int(run.tags[PID_TAG])
            if worker_alive(pid):
                return di.CheckRunHealthResult(di.WorkerStatus.RUNNING)
            return di.CheckRunHealthResult(
                di.WorkerStatus.FAILED, f"warm run worker (pid {pid}) is gone"
            )
        why = why_orphaned(self._instance, run)
        if why is None:
            return di.CheckRunHealthResult(di.WorkerStatus.RUNNING)
        return di.CheckRunHealthResult(di.WorkerStatus.FAILED, why)

    def dispose(self) -> None:
        if self._server is not None:
            with contextlib.suppress(ProcessLookupError):
                self._server.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._server.wait(timeout=10)
        super().dispose()
