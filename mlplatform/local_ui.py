"""``mlplatform ui``: the Dagster web UI and daemon on this platform's instance, supervised.

``dagster dev`` (webserver, daemon, a code server and the run workers that code server
starts) runs as a child in a session of its own; this process stays in front of it:

- **start**: create the platform's DAGSTER_HOME, end runs that a killed process left in
  progress (:mod:`mlplatform.defs.orphaned_runs`), check the port, then start ``dagster dev``
  on :data:`WORKSPACE` (code location ``mlplatform``, as in every other deployment);
- **stop** (the first SIGINT, SIGTERM or SIGHUP): ask the runs our processes work on to cancel,
  send SIGINT to every process of the tree (as a terminal's Ctrl-C would: run workers end their
  run CANCELED, the services shut down; Dagster's helper scripts get a quiet SIGTERM), repeat it
  to the workers of runs still in progress every second, SIGKILL the code servers once our runs
  have ended (they would finish calls in progress first, and the webserver and daemon wait for
  them), SIGKILL whatever is left after :data:`GRACE_SECONDS` (a second signal: at once), then
  end every run of ours still in progress. Everything is gone within 10 seconds (2-5 s here).

If this process itself is killed with SIGKILL, ``dagster dev`` gets SIGTERM from the kernel
(``PR_SET_PDEATHSIG``) and shuts its services down; a run it leaves in progress is ended by the
next ``mlplatform ui``.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import dagster as dg

from mlplatform import procfs
from mlplatform.defs.orphaned_runs import (
    IN_FLIGHT,
    end_orphaned_runs,
    end_run,
    in_flight_runs,
    launched_to,
    run_processes,
)
from mlplatform.defs.runs import ensure_dagster_home
from mlplatform.deploy import DEPLOY_DIR
from mlplatform.settings import Settings
from mlplatform.stack import processes

WORKSPACE = DEPLOY_DIR / "local_workspace.yaml"
GRACE_SECONDS = 5.0
"""From the stop signal to SIGKILL of whatever is still running."""
WHO = "mlplatform ui"
REPEAT_SECONDS = 1.0
"""How often the workers of runs still in progress are interrupted again while stopping."""
CODE_SERVER_GRACE_SECONDS = 1.5
"""From the stop signal to SIGKILL of the code servers, once no run of ours is in progress."""
CODE_SERVERS = ("dagster code-server", "dagster api grpc")
HELPERS = ("watch_orphans.py", "multiprocessing.resource_tracker")
"""Dagster's compute-log watchers and multiprocessing's tracker: a SIGINT makes them print a
traceback (or is ignored); they follow their parents anyway."""
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
Notify = Callable[[str], None]


def ui_env(settings: Settings, dagster_home: Path) -> dict[str, str]:
    """The environment of ``dagster dev`` and everything it starts: the platform's settings and
    its instance, so the definitions load (see :func:`mlplatform.settings.instance_problem`)."""
    env = {
        **os.environ,
        "DAGSTER_HOME": str(dagster_home),
        "MLPLATFORM_DAGSTER_HOME_DIR": str(dagster_home),
        "MLPLATFORM_HOME": str(settings.home),
        "MLPLATFORM_PROJECTS_DIR": str(settings.projects_dir.resolve()),
    }
    # `dagster dev` is "superseded by dg dev" (another package); we mean to run it
    quiet = "ignore:Function `dev_command` is superseded"
    env["PYTHONWARNINGS"] = ",".join(filter(None, [os.environ.get("PYTHONWARNINGS"), quiet]))
    return env


def dagster_dev_command(host: str, port: int) -> list[str]:
    local = Path(sys.executable).with_name("dagster")
    dagster = str(local) if local.is_file() else (shutil.which("dagster") or "dagster")
    return [dagster, "dev", "-w", str(WORKSPACE), "-h", host, "-p", str(port)]


def port_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


@dataclass
class StopRequest:
    """Stop signals received so far (the handler only records them)."""

    signals: list[int] = field(default_factory=list)

    def requested(self) -> bool:
        return bool(self.signals)

    @property
    def name(self) -> str:
        return signal.Signals(self.signals[0]).name if self.signals else ""


@contextlib.contextmanager
def stop_signals() -> Iterator[StopRequest]:
    """Record SIGINT, SIGTERM and SIGHUP instead of dying of them (the terminal's Ctrl-C and
    hang-up reach only this process: the services run in a session of their own)."""
    request = StopRequest()

    def handler(signum: int, _frame: FrameType | None) -> None:
        request.signals.append(signum)

    previous = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}
    try:
        yield request
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _stop_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """In the child: get SIGTERM when the supervisor dies, even of SIGKILL (Linux)."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass
class Tree:
    """Every process ``dagster dev`` started, as far as we have seen them: its process group
    and its descendants (also those that left the group), with their start ticks."""

    proc: subprocess.Popen[bytes]
    seen: dict[int, int] = field(default_factory=dict)

    @property
    def leader(self) -> int:
        return self.proc.pid

    def refresh(self) -> dict[int, int]:
        ticks = processes.start_ticks(self.leader)
        if ticks is not None:
            self.seen.setdefault(self.leader, ticks)
        self.seen.update(processes.descendants(self.leader))
        for pid in _group(self.leader):
            ticks = processes.start_ticks(pid)
            if ticks is not None:
                self.seen.setdefault(pid, ticks)
        return self.alive()

    def alive(self) -> dict[int, int]:
        self.proc.poll()  # reap the leader once it exits
        return {pid: t for pid, t in self.seen.items() if processes.alive(pid, t)}

    def signal(self, sig: signal.Signals) -> int:
        alive = self.refresh()
        for pid in alive:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        return len(alive)

    def endpoints(self) -> set[str]:
        """Code server sockets and ports named on our processes' command lines."""
        found = set()
        for pid in self.alive():
            argv = procfs.cmdline(pid)
            for flag, value in itertools.pairwise(argv):
                if flag in ("--socket", "--port", "-p"):
                    found.add(value)
        return found


def _group(pgid: int) -> list[int]:
    return [proc.pid for proc in procfs.live() if proc.pgid == pgid]


def our_runs(instance: dg.DagsterInstance, tree: Tree) -> list[dg.DagsterRun]:
    """In-flight runs that a process of ours executes, or that were launched on our code
    server and not picked up yet."""
    alive = set(tree.alive())
    endpoints = tree.endpoints()
    runs = []
    for run in in_flight_runs(instance):
        pids = {p.pid for p in run_processes(instance, run.run_id)}
        info = launched_to(run) or {}
        where = {str(info.get("socket") or ""), str(info.get("port") or "")} - {""}
        if pids & alive or (not pids and where & endpoints):
            runs.append(run)
    return runs


def serve(settings: Settings, host: str, port: int, notify: Notify = print) -> int:
    """Run the web UI and daemon until a stop signal (or until ``dagster dev`` exits); returns
    the exit code for the command."""
    dagster_home = ensure_dagster_home(settings)
    with stop_signals() as stop, dg.DagsterInstance.get() as instance:
        for ended in end_orphaned_runs(instance, f"{WHO} (start)"):
            notify(
                f"{WHO}: run {ended.run_id[:8]} ({ended.job}) was left in progress: "
                f"{ended.reason}; marked {ended.status}"
            )
        if not port_free(host, port):
            notify(f"{WHO}: port {port} on {host} is in use; pick another with --port")
            return 1
        if stop.requested():
            return 0
        notify(f"Dagster UI on http://{host}:{port} (DAGSTER_HOME={dagster_home}); Ctrl-C stops it")
        proc = subprocess.Popen(
            dagster_dev_command(host, port),
            env=ui_env(settings, dagster_home),
            cwd=dagster_home,  # elsewhere, dagster dev warns of any dagster.yaml it finds there
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_stop_with_parent,
        )
        tree = Tree(proc)
        last_scan = 0.0
        while not stop.requested() and proc.poll() is None:
            if time.monotonic() - last_scan > 2.0:  # remember who is ours, also once reparented
                tree.refresh()
                last_scan = time.monotonic()
            time.sleep(0.1)
        if not stop.requested():
            notify(f"{WHO}: dagster dev exited (code {proc.returncode}); see its output above")
        shutdown(instance, tree, stop, notify)
        return 0 if stop.requested() else (proc.returncode or 1)


def shutdown(
    instance: dg.DagsterInstance,
    tree: Tree,
    stop: StopRequest,
    notify: Notify = print,
    grace: float = GRACE_SECONDS,
) -> None:
    """Cancel our runs, interrupt the tree, SIGKILL whatever of it outlives ``grace`` seconds
    (or a second stop signal), then end every run of ours still in progress (module doc)."""
    started = time.monotonic()
    tree.refresh()
    why = f" ({stop.name})" if stop.requested() else ""
    notify(f"{WHO}: stopping{why}…")
    runs = our_runs(instance, tree)
    for run in runs:
        if run.status != dg.DagsterRunStatus.CANCELING:
            instance.report_run_canceling(run, message=f"{WHO} is stopping: canceling the run.")
    if runs:
        notify(f"{WHO}: canceling {len(runs)} run(s) in progress: " + _names(runs))
    signals_seen = len(stop.signals)
    # As a terminal's Ctrl-C would: the run workers end their runs (CANCELED: they were asked
    # to), the services shut down. Dagster's helper scripts get a quiet SIGTERM instead.
    _interrupt(tree)
    code_servers_killed, interrupted = False, time.monotonic()
    while tree.refresh() and time.monotonic() - started < grace:
        if len(stop.signals) > signals_seen:
            notify(f"{WHO}: second {stop.name}: killing now")
            break
        now = time.monotonic()
        busy = [run for run in runs if _in_flight(instance, run.run_id)]
        if busy and now - interrupted > REPEAT_SECONDS:
            # Dagster raises the interrupt from its signal handler; raised inside a garbage
            # collector callback it is swallowed ("Exception ignored in ...") and the run goes
            # on. Interrupt the workers of runs still in progress again.
            _interrupt_workers(instance, busy, tree)
            interrupted = now
        # A code server finishes the calls in progress first (a sensor evaluation can take
        # long) and the webserver and daemon wait for it; once our runs have ended it holds
        # nothing of value.
        if not busy and not code_servers_killed and now - started > CODE_SERVER_GRACE_SECONDS:
            _kill_code_servers(tree)
            code_servers_killed = True
        time.sleep(0.1)
    _kill_survivors(tree, started, notify)
    for run in runs:
        status = end_run(instance, run.run_id, f"{WHO} stopped; its worker is gone.")
        if status is not None:
            notify(f"{WHO}: run {run.run_id[:8]} ({run.job_name}) marked {status}")
    remaining = tree.alive()
    if remaining:
        notify(f"{WHO}: processes {sorted(remaining)} survived SIGKILL")
    notify(f"{WHO}: stopped in {time.monotonic() - started:.1f} s")


def _interrupt(tree: Tree) -> None:
    """SIGINT to every process of the tree, a quiet SIGTERM to Dagster's helper scripts."""
    for pid in tree.refresh():
        argv = procfs.cmdline(pid)
        helper = argv[:1] == ["tail"] or any(h in " ".join(argv) for h in HELPERS)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGTERM if helper else signal.SIGINT)


def _interrupt_workers(instance: dg.DagsterInstance, busy: list[dg.DagsterRun], tree: Tree) -> None:
    """SIGINT again to the workers (of our tree) of runs still in progress."""
    for run in busy:
        for proc in run_processes(instance, run.run_id):
            if proc.pid in tree.alive():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGINT)


def _kill_code_servers(tree: Tree) -> None:
    for pid in tree.alive():
        if any(c in " ".join(procfs.cmdline(pid)) for c in CODE_SERVERS):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _kill_survivors(tree: Tree, started: float, notify: Notify) -> None:
    """SIGKILL what is left of the tree, and wait a little for it to go."""
    left = tree.refresh()
    if left:
        took = time.monotonic() - started
        names = ", ".join(sorted(f"{_label(pid)} ({pid})" for pid in left))
        tree.signal(signal.SIGKILL)
        notify(f"{WHO}: still running after {took:.1f} s, killed: {names}")
        deadline = time.monotonic() + 3
        while tree.refresh() and time.monotonic() < deadline:
            time.sleep(0.05)


def _in_flight(instance: dg.DagsterInstance, run_id: str) -> bool:
    run = instance.get_run_by_id(run_id)
    return run is not None and run.status in IN_FLIGHT


def _label(pid: int) -> str:
    """A short name for a process: the module or script it runs."""
    argv = procfs.cmdline(pid)
    if "-m" in argv[:-1]:
        i = argv.index("-m")
        return " ".join(argv[i + 1 : i + 3])
    if any("multiprocessing" in a for a in argv):
        return "run worker (multiprocessing)"
    return " ".join(Path(a).name for a in argv[:3]) or "?"


def _names(runs: list[dg.DagsterRun]) -> str:
    return ", ".join(f"{r.run_id[:8]} ({r.job_name})" for r in runs)
