"""The kernel's process table (Linux ``/proc``), read in one place.

A pid alone can be reused; a pid with its start time (clock ticks since boot) names one
process for as long as the machine is up.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")


@dataclass(frozen=True)
class ProcStat:
    """The fields of ``/proc/<pid>/stat`` we use."""

    pid: int
    state: str
    ppid: int
    pgid: int
    start_ticks: int

    @property
    def exited(self) -> bool:
        """A zombie (exited, not yet reaped) or a dead task."""
        return self.state in ("Z", "X")


def stat(pid: int) -> ProcStat | None:
    """The process's state, parent, group and start time (None: no such process)."""
    try:
        raw = (PROC / str(pid) / "stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    # The command name is in parentheses and may itself hold spaces or parentheses.
    fields = raw[raw.rfind(")") + 2 :].split()
    try:
        return ProcStat(pid, fields[0], int(fields[1]), int(fields[2]), int(fields[19]))
    except (IndexError, ValueError):
        return None


def live() -> Iterator[ProcStat]:
    """Every process that has not exited."""
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            found = stat(int(entry.name))
            if found is not None and not found.exited:
                yield found


def cmdline(pid: int) -> list[str]:
    """The process's argv ([]: no such process, or a kernel thread)."""
    try:
        raw = (PROC / str(pid) / "cmdline").read_bytes()
    except OSError:
        return []
    return [arg.decode(errors="replace") for arg in raw.split(b"\0") if arg]


def boot_time() -> float:
    """When the machine booted, in seconds since the epoch."""
    for line in (PROC / "stat").read_text(encoding="ascii").splitlines():
        if line.startswith("btime "):
            return float(line.split()[1])
    raise OSError("no btime in /proc/stat")


def started_at(ticks: int) -> float:
    """A start time in clock ticks since boot, as seconds since the epoch."""
    return boot_time() + ticks / os.sysconf("SC_CLK_TCK")
