"""Detached service processes: start with a pid record and a log, check, wait, stop exactly.

Each service runs in its own session (so its process group holds the service and whatever it
spawns: uvicorn workers, run workers). A record names the leader's pid and its start time as
the kernel counts it (``/proc/<pid>/stat``), so a pid reused by another program is never
mistaken for ours; ``stop`` signals only processes of our group started after our leader.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from mlplatform import procfs


class StackError(RuntimeError):
    """A service did not start, did not become healthy, or could not be stopped."""


@dataclass(frozen=True)
class ProcessRecord:
    """What we started: enough to find it again and to prove it is still ours."""

    service: str
    pid: int
    start_ticks: int
    argv: tuple[str, ...]
    log: str
    started_at: float

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({**asdict(self), "argv": list(self.argv)}), encoding="utf-8")
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> ProcessRecord | None:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls(**{**data, "argv": tuple(data["argv"])})
        except (OSError, ValueError, TypeError, KeyError):
            return None


def start_ticks(pid: int) -> int | None:
    """When the process started, in clock ticks since boot (None: no such process)."""
    found = procfs.stat(pid)
    return found.start_ticks if found else None


def _reap(pid: int) -> None:
    """Collect the exit status if the process is our child, so it does not linger as a zombie."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def alive(pid: int, ticks: int | None = None) -> bool:
    """A process with this pid exists and has not exited (a zombie has); with ``ticks``, it
    must also be the process that started then (not a later one that reused the pid)."""
    found = procfs.stat(pid)
    if found is None or found.exited:
        return False
    return ticks is None or found.start_ticks == ticks


def is_running(record: ProcessRecord) -> bool:
    """The recorded process still exists, is the one we started, and has not exited."""
    _reap(record.pid)
    return alive(record.pid, record.start_ticks)


def started_at(pid: int) -> float | None:
    """When a live process started, in seconds since the epoch (None: no such process, or
    it has exited). Precise to a clock tick; good for "did this pid exist back then"."""
    found = procfs.stat(pid)
    if found is None or found.exited:
        return None
    return procfs.started_at(found.start_ticks)


def descendants(pid: int) -> dict[int, int]:
    """Live processes below ``pid`` (children, their children, ...: also those that left its
    process group or session) with their start ticks, so a later signal can check that a pid
    still names the same process."""
    children: dict[int, list[tuple[int, int]]] = {}
    for proc in procfs.live():
        children.setdefault(proc.ppid, []).append((proc.pid, proc.start_ticks))
    found: dict[int, int] = {}
    todo = [pid]
    while todo:
        for child, ticks in children.get(todo.pop(), []):
            if child not in found:
                found[child] = ticks
                todo.append(child)
    return found


def group_members(record: ProcessRecord) -> list[int]:
    """Live processes of our group (our leader's pid is the group id) started no earlier than
    our leader: the service and everything it spawned, nothing else."""
    return [
        proc.pid
        for proc in procfs.live()
        if proc.pgid == record.pid and proc.start_ticks >= record.start_ticks
    ]


def start(
    service: str,
    argv: Sequence[str],
    env: Mapping[str, str],
    log: Path,
    record_path: Path,
    cwd: Path,
) -> ProcessRecord:
    """Start ``argv`` detached (own session, stdin closed, output appended to ``log``)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        out.write(f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} starting {service}\n".encode())
        out.flush()
        proc = subprocess.Popen(
            list(argv),
            env=dict(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )
    ticks = start_ticks(proc.pid)
    if ticks is None:  # exited at once; keep a record anyway so the log is found
        ticks = -1
    record = ProcessRecord(service, proc.pid, ticks, tuple(argv), str(log), time.time())
    record.save(record_path)
    return record


def stop(record: ProcessRecord, timeout: float = 30.0) -> list[int]:
    """SIGTERM our process group, SIGKILL what is left after ``timeout``; returns the pids that
    were signalled. A record whose leader and group are gone (or were never ours) is a no-op."""
    members = group_members(record) if record.start_ticks >= 0 else []
    if not members:
        _reap(record.pid)
        return []
    for pid in members:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _reap(record.pid)
        if not group_members(record):
            return members
        time.sleep(0.2)
    for pid in group_members(record):
        _signal(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while group_members(record) and time.monotonic() < deadline:
        _reap(record.pid)
        time.sleep(0.1)
    left = group_members(record)
    if left:
        raise StackError(f"{record.service}: processes {left} survived SIGKILL")
    return members


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def log_tail(path: Path | str, chars: int = 3000) -> str:
    path = Path(path)
    if not path.is_file():
        return f"(no log at {path})"
    with path.open("rb") as fh:
        fh.seek(0, os.SEEK_END)
        fh.seek(max(0, fh.tell() - chars))
        return fh.read().decode("utf-8", errors="replace")


def wait_until(
    what: str,
    ready: Callable[[], bool],
    timeout: float,
    log: Path | str | None = None,
    alive: Callable[[], bool] | None = None,
    interval: float = 0.5,
) -> None:
    """Poll ``ready`` until it is true; raise StackError (with the log's tail) when ``timeout``
    passes or ``alive`` says the process behind it has exited."""
    deadline = time.monotonic() + timeout
    while True:
        if ready():
            return
        if alive is not None and not alive():
            tail = log_tail(log) if log else ""
            raise StackError(f"{what}: the process exited; log tail ({log}):\n{tail}")
        if time.monotonic() >= deadline:
            tail = log_tail(log) if log else ""
            raise StackError(
                f"timed out after {timeout:.0f}s waiting for {what}; log tail ({log}):\n{tail}"
            )
        time.sleep(interval)
