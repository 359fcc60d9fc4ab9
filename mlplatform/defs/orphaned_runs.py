"""Runs whose process is gone: find them and end them, so the run list tells the truth.

A run is STARTING, STARTED or CANCELING while a process works on it. When that process is
killed (SIGKILL, out of memory, a stopped machine) nobody reports the run's end, and the run
stays "in progress" forever. A run is *orphaned* here when

- the processes it names are all gone, a pid now held by a younger process counting as gone
  (Dagster records the pid of the process that executes a run in an engine event: the run
  worker of a code server, or the process of an in-process ``mlplatform materialize``, whose
  runs also carry it as a tag from their creation on, as runs of a warm run worker do from
  their launch, :mod:`mlplatform.defs.fork_launcher`); or
- it names no process yet (launched, not picked up) and the code server it was handed to
  (the ``dagster/grpc_info`` tag) no longer answers, so it can never start.

Only for instances whose runs are processes on this machine (the default run launcher:
embedded SQLite and the team stack); a pid of a container or a pod means nothing here.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterable
from dataclasses import dataclass

import dagster as dg

from mlplatform.defs.dagster_internals import GRPC_INFO_TAG
from mlplatform.stack import processes

IN_FLIGHT = (
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
)
PID_TAG = "mlplatform/pid"
"""Run tag: the process that executes an in-process run (``mlplatform materialize``), known
before Dagster's first engine event names it."""
PID_SLACK_SECONDS = 2.0
"""A process that started this long after the event naming its pid is another process."""


@dataclass(frozen=True)
class RunProcess:
    """A process a run's event log names, and when the log said it was alive."""

    pid: int
    seen_at: float

    def alive(self) -> bool:
        started = processes.started_at(self.pid)
        return started is not None and started <= self.seen_at + PID_SLACK_SECONDS


def local_runs(instance: dg.DagsterInstance) -> bool:
    """Whether this instance's runs are processes on this machine (the default launcher)."""
    return isinstance(instance.run_launcher, dg.DefaultRunLauncher)


def in_flight_runs(instance: dg.DagsterInstance) -> list[dg.DagsterRun]:
    return list(instance.get_runs(filters=dg.RunsFilter(statuses=list(IN_FLIGHT))))


def run_processes(instance: dg.DagsterInstance, run_id: str) -> list[RunProcess]:
    """Every process the run's tags (:data:`PID_TAG`) and engine events (``pid`` metadata)
    name, oldest first."""
    found = []
    record = instance.get_run_record_by_id(run_id)
    tagged = record.dagster_run.tags.get(PID_TAG, "") if record else ""
    if record is not None and tagged.isdigit():
        # the tag's latest write (a warm run worker's pid is tagged after its fork)
        found.append(RunProcess(int(tagged), record.update_timestamp.timestamp()))
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
        data = entry.dagster_event.event_specific_data if entry.dagster_event else None
        value = getattr(data, "metadata", {}).get("pid")
        if value is not None and str(value.value).isdigit():
            found.append(RunProcess(int(value.value), entry.timestamp))
    return found


def launched_to(run: dg.DagsterRun) -> dict[str, object] | None:
    """The code server endpoint the run was handed to (host and port, or a socket)."""
    raw = run.tags.get(GRPC_INFO_TAG)
    if not raw:
        return None
    try:
        info = json.loads(raw)
    except ValueError:
        return None
    return info if isinstance(info, dict) else None


def endpoint_answers(info: dict[str, object], timeout: float = 1.0) -> bool:
    """Something accepts connections at a code server endpoint (a TCP port or a socket)."""
    try:
        if info.get("socket"):
            with socket.socket(socket.AF_UNIX) as sock:
                sock.settimeout(timeout)
                sock.connect(str(info["socket"]))
        else:
            host, port = str(info.get("host") or "localhost"), int(str(info.get("port")))
            socket.create_connection((host, port), timeout=timeout).close()
    except (OSError, ValueError):
        return False
    return True


def why_orphaned(instance: dg.DagsterInstance, run: dg.DagsterRun) -> str | None:
    """Why nothing can be working on an in-flight run any more; None if something may be."""
    procs = run_processes(instance, run.run_id)
    if procs:
        if any(p.alive() for p in procs):
            return None
        pids = ", ".join(sorted({str(p.pid) for p in procs}))
        return f"the process that ran it (pid {pids}) is gone without reporting the run's end"
    info = launched_to(run)
    if info is not None and not endpoint_answers(info):
        where = info.get("socket") or f"{info.get('host')}:{info.get('port')}"
        return f"the code server it was launched on ({where}) is gone, so it can never start"
    return None


def end_run(instance: dg.DagsterInstance, run_id: str, message: str) -> str | None:
    """Mark a run that is still in flight CANCELED (if it was being canceled) or FAILURE,
    with ``message`` in its event log; returns the new status, None if it had ended."""
    run = instance.get_run_by_id(run_id)
    if run is None or run.status not in IN_FLIGHT:
        return None
    if run.status == dg.DagsterRunStatus.CANCELING:
        instance.report_run_canceled(run, message=message)
        return "CANCELED"
    instance.report_run_failed(run, message=message)
    return "FAILURE"


@dataclass(frozen=True)
class EndedRun:
    run_id: str
    job: str
    status: str
    reason: str


def end_orphaned_runs(
    instance: dg.DagsterInstance, who: str, runs: Iterable[dg.DagsterRun] | None = None
) -> list[EndedRun]:
    """End every orphaned in-flight run (of ``runs``, default: all of the instance), saying
    in its event log that ``who`` did and why. Queued runs are left to the queue."""
    if not local_runs(instance):
        return []
    ended = []
    for run in in_flight_runs(instance) if runs is None else runs:
        reason = why_orphaned(instance, run)
        if reason is None:
            continue
        status = end_run(instance, run.run_id, f"{who}: {reason}; ending the run here.")
        if status is not None:
            ended.append(EndedRun(run.run_id, run.job_name, status, reason))
    return ended
