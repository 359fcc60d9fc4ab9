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


@cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``; None on a C library without it (musl, macOS)."""
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        trim: Callable[[int], int] = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None
    return trim


def return_free_memory() -> None:
    """Collect garbage, then return the free pages of Arrow's pool and the C heap."""
    import pyarrow as pa

    gc.collect()
    pa.default_memory_pool().release_unused()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
