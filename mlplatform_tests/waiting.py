"""Bounded waits: poll a condition until it holds or fail saying what was awaited."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def wait_for(
    what: str,
    check: Callable[[], Any],
    seconds: float,
    *,
    interval: float = 0.5,
    details: Callable[[], str] | None = None,
) -> Any:
    """Return ``check()``'s first truthy value; after ``seconds`` fail with ``what`` and
    ``details()`` (e.g. the tail of a server log)."""
    deadline = time.monotonic() + seconds
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            extra = f"\n{details()}" if details is not None else ""
            raise AssertionError(f"timed out after {seconds}s waiting for {what}{extra}")
        time.sleep(interval)


def let_time_pass(seconds: float) -> None:
    """Sleep on purpose where time passing is what a test exercises (a slow or hanging step,
    paced load); callers say why. Never use it to wait for a condition: use ``wait_for``."""
    time.sleep(seconds)
