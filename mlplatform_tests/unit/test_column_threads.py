"""Columns worked on side by side: results in order, errors where they belong, fork-safe."""

from __future__ import annotations

import os
import threading
import time

import pytest

from mlplatform.columnar import column_threads
from mlplatform.columnar.column_threads import column_map, column_submit, usable_cores

pytestmark = pytest.mark.unit


def test_results_come_back_in_the_order_of_the_items() -> None:
    def slow_first(i: int) -> tuple[int, str]:
        time.sleep(0.05 if i == 0 else 0.0)  # the first item finishes last
        return i, threading.current_thread().name

    done = list(column_map(slow_first, range(6)))
    assert [i for i, _ in done] == list(range(6))
    assert all(name.startswith("columns") for _, name in done)


def test_an_error_is_raised_when_its_result_is_reached() -> None:
    def fails_on_two(i: int) -> int:
        if i == 2:
            raise ValueError("column 2 is bad")
        return i

    results = column_map(fails_on_two, range(4))
    assert next(results) == 0
    assert next(results) == 1
    with pytest.raises(ValueError, match="column 2 is bad"):
        next(results)


def test_submit_runs_alongside_and_returns_its_result() -> None:
    started = threading.Event()

    def waits_for_the_caller() -> str:
        started.set()
        return threading.current_thread().name

    future = column_submit(waits_for_the_caller)
    assert started.wait(5)
    assert future.result(5).startswith("columns")


def test_one_thread_per_usable_core() -> None:
    list(column_map(abs, [1]))
    pool = column_threads._pool
    assert pool is not None
    assert pool._max_workers == max(1, min(column_threads.MAX_THREADS, usable_cores()))
    assert usable_cores() == len(os.sched_getaffinity(0))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
def test_a_forked_child_makes_its_own_threads() -> None:
    list(column_map(abs, [1]))  # the parent's pool exists
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: the parent's threads are not here; a new pool works
        code = 1
        try:
            fresh = column_threads._pool is None
            code = 0 if fresh and list(column_map(abs, [-3, 4])) == [3, 4] else 2
        finally:
            os.write(write, bytes([code]))
            os._exit(code)
    os.close(write)
    _, status = os.waitpid(pid, 0)
    assert os.read(read, 1) == b"\x00"
    assert os.waitstatus_to_exitcode(status) == 0
