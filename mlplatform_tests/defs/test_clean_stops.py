"""In process: runs whose process is gone are found and ended; one signal stops a sequence of
in-process runs (the run in progress fails, nothing further starts)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from dagster._core.events import DagsterEvent, DagsterEventType
from dagster._core.storage.tags import GRPC_INFO_TAG

from mlplatform.defs.interrupts import StopRequestedError, stop_on_signal
from mlplatform.defs.orphaned_runs import (
    PID_TAG,
    RunProcess,
    end_orphaned_runs,
    end_run,
    in_flight_runs,
)
from mlplatform_tests.waiting import let_time_pass


@dg.op
def slow() -> None:
    for _ in range(200):  # 10 s of work in small steps, so an interrupt lands between them
        let_time_pass(0.05)


@dg.job
def slow_job() -> None:
    slow()


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def started_run(instance: Any, tags: dict[str, str], status: str = "RUN_START") -> dg.DagsterRun:
    run = instance.create_run_for_job(job_def=slow_job, tags=tags)
    event = DagsterEvent(getattr(DagsterEventType, status).value, job_name=run.job_name)
    instance.handle_new_event(
        dg.EventLogEntry(
            error_info=None,
            level="DEBUG",
            user_message="",
            run_id=run.run_id,
            timestamp=time.time(),
            dagster_event=event,
        )
    )
    return instance.get_run_by_id(run.run_id)


def status(instance: Any, run: dg.DagsterRun) -> str:
    return instance.get_run_by_id(run.run_id).status.value


def test_a_run_whose_process_is_gone_is_failed_one_whose_process_lives_is_not(
    instance: Any,
) -> None:
    gone = started_run(instance, {PID_TAG: str(dead_pid())})
    alive = started_run(instance, {PID_TAG: str(os.getpid())})
    ended = end_orphaned_runs(instance, "test")
    assert [(e.run_id, e.status) for e in ended] == [(gone.run_id, "FAILURE")]
    assert status(instance, gone) == "FAILURE" and status(instance, alive) == "STARTED"
    message = instance.all_logs(gone.run_id)[-1].message
    assert message.startswith("test: the process that ran it (pid ") and "is gone" in message
    assert [r.run_id for r in in_flight_runs(instance)] == [alive.run_id]


def test_a_pid_now_held_by_a_younger_process_counts_as_gone() -> None:
    assert RunProcess(os.getpid(), time.time()).alive()
    assert not RunProcess(os.getpid(), seen_at=time.time() - 10 * 365 * 86400).alive()
    assert not RunProcess(dead_pid(), time.time()).alive()


def test_a_canceling_run_whose_process_is_gone_ends_canceled(instance: Any) -> None:
    run = started_run(instance, {PID_TAG: str(dead_pid())})
    instance.report_run_canceling(run)
    (ended,) = end_orphaned_runs(instance, "test")
    assert ended.status == "CANCELED" and status(instance, run) == "CANCELED"
    assert end_run(instance, run.run_id, "again") is None  # finished runs stay as they are


def test_a_run_launched_on_a_code_server_that_is_gone_is_failed(
    instance: Any, tmp_path: Path
) -> None:
    listening = socket.socket(socket.AF_UNIX)
    listening.bind(str(tmp_path / "up.sock"))
    listening.listen()
    try:
        up = started_run(
            instance, {GRPC_INFO_TAG: json.dumps({"socket": str(tmp_path / "up.sock")})}
        )
        down = started_run(
            instance, {GRPC_INFO_TAG: json.dumps({"socket": str(tmp_path / "down.sock")})}
        )
        unknown = started_run(instance, {})  # nothing names its process: left alone
        ended = end_orphaned_runs(instance, "test")
    finally:
        listening.close()
    assert [e.run_id for e in ended] == [down.run_id]
    assert "code server it was launched on" in ended[0].reason
    assert status(instance, up) == status(instance, unknown) == "STARTED"


def test_a_signal_during_a_run_fails_it_and_stops_what_follows(instance: Any) -> None:
    started = time.monotonic()
    with stop_on_signal() as stop:
        threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT)).start()
        result = slow_job.execute_in_process(instance=instance, raise_on_error=False)
        with pytest.raises(StopRequestedError) as stopped:
            stop.check()
    assert time.monotonic() - started < 5
    assert not result.success
    assert instance.get_run_by_id(result.run_id).status == dg.DagsterRunStatus.FAILURE
    assert stopped.value.signal_name == "SIGINT" and stopped.value.exit_code == 130


def test_a_signal_between_runs_stops_the_next_at_its_first_step(instance: Any) -> None:
    before = signal.getsignal(signal.SIGTERM)
    with stop_on_signal() as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        started = time.monotonic()
        # a run that starts anyway (the signal came while it was being prepared) stops early
        result = slow_job.execute_in_process(instance=instance, raise_on_error=False)
        assert time.monotonic() - started < 5 and not result.success
        with pytest.raises(StopRequestedError) as stopped:
            stop.check()
    assert stopped.value.signal_name == "SIGTERM" and stopped.value.exit_code == 143
    assert signal.getsignal(signal.SIGTERM) == before
