"""Columns worked on side by side: Arrow's compute kernels and numpy's sorts release the GIL,
so a step that parses or judges one column at a time can use every core it may run on.

One pool per process, made on first use with a thread per usable core (at most
``MAX_THREADS``); a forked child (a run worker) makes its own, since threads do not survive a
fork. Results come back in the order of the items, so what a step reports is the same as
when the columns were done one after another. Work given to the threads must not itself wait
on them (a full pool would wait forever).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from threading import Lock
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")
MAX_THREADS = 8  # past this the kernels wait on memory bandwidth, not on cores

_pool: ThreadPoolExecutor | None = None
_lock = Lock()


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity), not the machine's."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # no affinity on macOS
        return os.cpu_count() or 1


def _threads() -> ThreadPoolExecutor:
    global _pool
    with _lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(
                max(1, min(MAX_THREADS, usable_cores())), thread_name_prefix="columns"
            )
        return _pool


def _forget_pool() -> None:
    global _pool, _lock
    _pool, _lock = None, Lock()


os.register_at_fork(after_in_child=_forget_pool)


def column_map(work: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
    """``map(work, items)`` on the column threads, results in the order of ``items``; the
    first exception is raised when its result is reached, as ``map`` would."""
    return _threads().map(work, items)


def column_submit(work: Callable[[], R]) -> Future[R]:
    """Start ``work()`` on the column threads; its Future's ``result()`` waits for it."""
    return _threads().submit(work)
