"""The process table reader: our own process, our child, a zombie and a missing pid."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from mlplatform import procfs

pytestmark = pytest.mark.unit


def test_reads_this_process() -> None:
    me = procfs.stat(os.getpid())
    assert me is not None and not me.exited
    assert me.ppid == os.getppid() and me.pgid == os.getpgid(0)
    assert time.time() - 86400 < procfs.started_at(me.start_ticks) <= time.time() + 1
    assert "python" in os.path.basename(procfs.cmdline(os.getpid())[0])


def test_child_is_listed_then_a_zombie_until_reaped() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        deadline = time.monotonic() + 30
        while (found := procfs.stat(child.pid)) is not None and not found.exited:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert found is not None and found.state == "Z"
        assert child.pid not in {p.pid for p in procfs.live()}
    finally:
        child.wait()
    assert procfs.stat(child.pid) is None


def test_missing_pid() -> None:
    assert procfs.stat(2**22 + 1) is None
    assert procfs.cmdline(2**22 + 1) == []
