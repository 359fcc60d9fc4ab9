"""Returning freed memory and keeping the collector off what a run worker imported."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.unit

PROBE = """
import gc
from mlplatform.free_memory import freeze_what_is_alive, return_free_memory

class Node:
    def __init__(self):
        self.me = self

before = Node()          # alive at the freeze: frozen
freeze_what_is_alive()
frozen = gc.get_freeze_count()
freeze_what_is_alive()   # once per process
assert gc.get_freeze_count() == frozen, "a second call froze again"
del before               # a frozen cycle stays (never collected)
after = Node()           # made after the freeze: collected as usual
del after
assert gc.collect() >= 1, "a cycle made after the freeze was not collected"
return_free_memory()
print(frozen)
"""


def test_freeze_once_keeps_later_garbage_collectable() -> None:
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) > 1000  # the interpreter's and the imported modules' objects
