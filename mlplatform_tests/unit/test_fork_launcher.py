"""The warm run launcher's small parts: where its socket lives, how a worker is told alive."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mlplatform import procfs
from mlplatform.defs.fork_launcher import MAX_SOCKET_PATH, SOCKET_NAME, socket_path, worker_alive
from mlplatform_tests.waiting import wait_for

pytestmark = pytest.mark.unit


def test_the_socket_is_under_dagster_home_unless_the_path_is_too_long(tmp_path: Path) -> None:
    assert socket_path(tmp_path) == tmp_path / SOCKET_NAME
    deep = tmp_path / ("d" * (MAX_SOCKET_PATH + 1))
    far = socket_path(deep)
    assert len(str(far)) <= MAX_SOCKET_PATH and far.parent != deep
    assert far == socket_path(deep) and far != socket_path(tmp_path / ("e" * 120))


def test_a_worker_is_alive_only_as_a_live_child_of_a_warm_server() -> None:
    assert not worker_alive(os.getpid())  # alive, but not a warm server's child
    code = "import time; time.sleep(30)"
    other = subprocess.Popen([sys.executable, "-c", code, "mlplatform.defs.fork_server"])
    try:
        # until the child has exec'd, /proc shows this process's command line
        wait_for("the child's exec", lambda: code in procfs.cmdline(other.pid), 10, interval=0.01)
        assert worker_alive(other.pid)  # its command line names the server module
        other.kill()
        os.waitid(os.P_PID, other.pid, os.WEXITED | os.WNOWAIT)  # exited, left unreaped
        assert not worker_alive(other.pid)  # a zombie is no worker
    finally:
        other.kill()
        other.wait()
    assert not worker_alive(other.pid)
