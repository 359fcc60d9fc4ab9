"""Give memory that is freed but still held by the allocators back to the operating system.

A data step frees a partition's temporaries (Arrow buffers from Arrow's own pool, numpy arrays
from the C heap); both allocators keep freed pages for reuse, and one cannot reuse the other's.
Between steps of one process (a run executes raw, then features) that kept memory adds to the
next step's peak, so it is returned at step ends.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
from collections.abc import Callable
from functools import cache

M_MMAP_THRESHOLD = -3  # mallopt's parameter number (glibc malloc.h)
MMAP_THRESHOLD = 128 << 10  # glibc's initial value, kept from then on


@cache
def _libc_function(name: str) -> Callable[..., int] | None:
    """A glibc function by name; None on a C library without it (musl, macOS)."""
    library = ctypes.util.find_library("c")
    if not library:
        return None
    try:
        function: Callable[..., int] = getattr(ctypes.CDLL(library), name)
    except (OSError, AttributeError):
        return None
    return function


def large_blocks_from_the_os() -> None:
    """Allocate blocks of 128 KiB and more with ``mmap`` for the rest of the process, so
    freeing one returns it to the OS at once. glibc otherwise raises that threshold each
    time such a block is freed, and then serves chunk-sized arrays from its heap, where
    freed ones stay as fragments that later allocations of other sizes cannot reuse
    (a streamed ingest held ~1.7x its typed result that way)."""
    mallopt = _libc_function("mallopt")
    if mallopt is not None:
        mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)


def pause_collection() -> None:
    """For a command's start-up: no cyclic garbage collection while imports build the heap.
    Each full collection walks every object alive, and start-up (Dagster, SQLAlchemy, pandas)
    grows the heap by ~25% between full collections, which cost ~0.4 s of a command's ~1.5 s
    of imports. ``resume_collection`` (or ``freeze_what_is_alive``) ends the pause."""
    gc.disable()


def resume_collection() -> None:
    """Move what start-up built out of the collector's view, then collect again as usual."""
    if not gc.isenabled():
        gc.freeze()
        gc.enable()


@cache
def freeze_what_is_alive() -> None:
    """Once per process: collect garbage, then move every object alive now (modules, the code
    location, the run's context) out of the collector's view, so the full collections at step
    ends walk only what steps allocate since (with Dagster loaded each one otherwise walks
    ~175,000 objects, ~0.1 s). Frozen objects are still freed by reference counting. Ends a
    ``pause_collection``."""
    gc.collect()
    gc.freeze()
    gc.enable()


def return_free_memory() -> None:
    """Collect garbage, then return the free pages of Arrow's pool and the C heap."""
    import pyarrow as pa

    gc.collect()
    pa.default_memory_pool().release_unused()
    trim = _libc_function("malloc_trim")
    if trim is not None:
        trim(0)
