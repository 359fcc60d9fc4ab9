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


def _stat(pid: int) -> list[str] | None:
    """Fields of ``/proc/<pid>/stat`` after the command name (state is [0], pgid [2])."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    return raw[raw.rfind(")") + 2 :].split()


def start_ticks(pid: int) -> int | None:
    """When the process started, in clock ticks since boot (None: no such process)."""
    fields = _stat(pid)
    return int(fields[19]) if fields else None


def _reap(pid: int) -> None:
    """Collect the exit status if the process is our child, so it does not linger as a zombie."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def alive(pid: int, ticks: int | None = None) -> bool:
    """A process with this pid exists and has not exited (a zombie has); with ``ticks``, it
    must also be the process that started then (not a later one that reused the pid)."""
    fields = _stat(pid)
    if not fields or fields[0] in "ZX":
        return False
    return ticks is None or int(fields[19]) == ticks


def is_running(record: ProcessRecord) -> bool:
    """The recorded process still exists, is the one we started, and has not exited."""
    _reap(record.pid)
    return alive(record.pid, record.start_ticks)


def started_at(pid: int) -> float | None:
    """When a live process started, in seconds since the epoch (None: no such process, or
    it has exited). Precise to a clock tick; good for "did this pid exist back then"."""
    fields = _stat(pid)
    if not fields or fields[0] in "ZX":
        return None
    return _boot_time() + int(fields[19]) / os.sysconf("SC_CLK_TCK")


def _boot_time() -> float:
    for line in Path("/proc/stat").read_text(encoding="ascii").splitlines():
        if line.startswith("btime "):
            return float(line.split()[1])
    raise OSError("no btime in /proc/stat")


def descendants(pid: int) -> dict[int, int]:
    """Live processes below ``pid`` (children, their children, ...: also those that left its
    process group or session) with their start ticks, so a later signal can check that a pid
    still names the same process."""
    children: dict[int, list[tuple[int, int]]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat(int(entry.name))
        if fields and fields[0] not in "ZX":
            children.setdefault(int(fields[1]), []).append((int(entry.name), int(fields[19])))
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
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat(int(entry.name))
        if (
            fields
            and int(fields[2]) == record.pid
            and int(fields[19]) >= record.start_ticks
            and fields[0] not in "ZX"
        ):
            members.append(int(entry.name))
    return members


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
