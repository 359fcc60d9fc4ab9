"""The first SIGINT or SIGTERM stops a command that runs jobs in process, one after another.

Dagster turns an interrupt during ``execute_in_process`` into a failed run and returns, so a
loop over partitions went on with the next one: each Ctrl-C failed only the run in progress.
Within :func:`stop_on_signal`:

- a SIGINT or SIGTERM during a run interrupts it as Dagster does (the run ends FAILURE);
  Dagster's handler takes the signal, a wakeup fd lets us see it afterwards;
- one between runs is recorded by our handler, which also raises Dagster's own interrupt flag,
  so a run that is being prepared stops at its first step instead of running to the end;
- :meth:`Stop.check` (call it before each run, e.g. from the progress callback) raises
  :class:`StopRequestedError` once either happened, so no further run starts;
- until then the process interrupts itself again every second: Dagster raises the interrupt
  from its signal handler, and raised inside a garbage-collector callback it is swallowed
  ("Exception ignored in ...") and the run would go on to its end.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from types import FrameType

from mlplatform.defs.dagster_internals import pop_captured_interrupt, raise_interrupt_flag

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
REPEAT_SECONDS = 1.0


class StopRequestedError(Exception):
    """A stop signal arrived; nothing more should start."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(f"stopped by {self.signal_name}")

    @property
    def signal_name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_code(self) -> int:
        """What a shell reports for a process ended by this signal (130 for SIGINT)."""
        return 128 + self.signum


class Stop:
    """Whether a stop signal arrived since :func:`stop_on_signal` was entered."""

    def __init__(self, wakeup_fd: int | None) -> None:
        self._wakeup_fd = wakeup_fd
        self.signum: int | None = None
        self.raised = False

    def _drain(self) -> None:
        while self._wakeup_fd is not None:
            try:
                data = os.read(self._wakeup_fd, 512)
            except (BlockingIOError, InterruptedError):
                return
            if not data:
                return
            for signum in data:
                if signum in STOP_SIGNALS and self.signum is None:
                    self.signum = signum

    @property
    def requested(self) -> bool:
        self._drain()
        return self.signum is not None

    def check(self) -> None:
        """Raise :class:`StopRequestedError` if a stop signal arrived."""
        if self.requested:
            assert self.signum is not None
            self.raised = True
            raise StopRequestedError(self.signum)


@contextlib.contextmanager
def stop_on_signal() -> Iterator[Stop]:
    """Catch SIGINT and SIGTERM for a sequence of in-process runs (main thread only; elsewhere
    signals are not ours to handle and the returned :class:`Stop` never fires)."""
    if threading.current_thread() is not threading.main_thread():
        yield Stop(None)
        return
    read_fd, write_fd = os.pipe()
    os.set_blocking(read_fd, False)
    os.set_blocking(write_fd, False)
    stop = Stop(read_fd)

    def handler(signum: int, _frame: FrameType | None) -> None:
        if stop.signum is None:
            stop.signum = signum
        raise_interrupt_flag()  # a run being prepared stops at its first step

    def repeat() -> None:
        while not done.wait(REPEAT_SECONDS):
            if stop.requested and not stop.raised:
                os.kill(os.getpid(), signal.SIGINT)

    previous = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}
    previous_fd = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    done = threading.Event()
    repeater = threading.Thread(target=repeat, name="stop-on-signal", daemon=True)
    repeater.start()
    try:
        yield stop
    finally:
        done.set()
        repeater.join()
        signal.set_wakeup_fd(previous_fd)
        for sig, old in previous.items():
            signal.signal(sig, old)
        pop_captured_interrupt()
        os.close(read_fd)
        os.close(write_fd)
