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


PAUSE = """
import gc, sys
from mlplatform.free_memory import freeze_what_is_alive, pause_collection, resume_collection

pause_collection()
assert not gc.isenabled()
import json, decimal   # start-up imports: no collection walks them
resume_collection()
assert gc.isenabled()
frozen = gc.get_freeze_count()
assert frozen > 1000, frozen
resume_collection()    # already running: nothing frozen again
assert gc.get_freeze_count() == frozen
pause_collection()
freeze_what_is_alive() # a run's first step also ends the pause
assert gc.isenabled()
print("ok")
"""

CLI_PAUSES = """
import gc, sys
from mlplatform.cli import app
sys.argv = ["mlplatform", "validate", "--help"]
try:
    app()
except SystemExit:
    pass
print(gc.isenabled())
"""


def test_collection_paused_for_start_up_and_resumed_once() -> None:
    done = subprocess.run([sys.executable, "-c", PAUSE], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_the_command_line_pauses_collection_for_start_up() -> None:
    # a short command ends paused; long ones (runs, serve, ui, predict) resume it
    done = subprocess.run([sys.executable, "-c", CLI_PAUSES], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "False"
