"""The prediction log of a serving process: a sample of predict requests, written off the hot
path.

``PredictionLogMiddleware`` (pure ASGI, around the fast path and the FastAPI route) decides per
request whether it is sampled (``monitoring.log.rate``); a sampled request's body and answer
bytes are kept as they pass and, on a 200, offered to ``PredictionLog``'s bounded queue
(``queue_requests``, ``queue_mb``) without any parsing. A full queue drops the request and
counts it; nothing on the request path waits for the writer or the disk. A background thread
takes what was queued and has it parsed, cut to the logged columns (``monitoring.log.columns``)
and written as one Parquet file per project and UTC day per flush, atomically, on disk or in
object storage (``mlplatform.prediction_log`` says where): small batches in the thread, large
ones (under load) in a worker process, so the parsing never competes with the event loop for
the interpreter lock. Tokens and headers are never looked at.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import random
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mlplatform.prediction_log import LogStore
from mlplatform.serving.log_batches import Batch, Written, worker_signals, write_batch
from mlplatform.serving.shadow_counts import ShadowCounter
from mlplatform.spec import ProjectSpec

log = logging.getLogger(__name__)
BATCH_REQUESTS = 1_000  # the writer starts early once this many requests wait
# Batches this large are parsed and written in the writer's worker process: a thread busy
# with them would hold the interpreter lock the event loop needs after every socket call.
PROCESS_FROM = 200
PREDICT_PATH = re.compile(r"^/v1/projects/([^/]+)/predict$")


@dataclass(frozen=True)
class Logged:
    """One sampled request as it passed: raw bytes in and out, when, how long."""

    project: str
    time: float  # seconds since the epoch
    latency: float  # seconds
    body: bytes
    answer: bytes


@dataclass
class LogStats:
    """Counts of one project's log since the process started."""

    offered: int = 0  # sampled requests answered 200
    dropped: int = 0  # of those, not queued because the queue was full
    written_requests: int = 0
    written_rows: int = 0
    failed_requests: int = 0  # queued but lost: unreadable, or the write failed


@dataclass
class _Project:
    rate: float
    columns: list[str]
    queue_requests: int
    max_bytes: int
    stats: LogStats = field(default_factory=LogStats)


class PredictionLog:
    """Bounded queue + background writer of the prediction log of every project whose
    ``monitoring.log.rate`` is above 0."""

    def __init__(
        self,
        specs: Mapping[str, ProjectSpec],
        store: LogStore,
        shadow: Callable[[str], Path | None] | None = None,
    ):
        self.store = store
        self.shadow = shadow  # project -> folder of its verified shadow bundle, or None
        self.projects = {
            name: _Project(
                spec.monitoring.log.rate,
                spec.logged_columns,
                spec.monitoring.log.queue_requests,
                int(spec.monitoring.log.queue_mb * 2**20),
            )
            for name, spec in specs.items()
            if spec.monitoring.log.rate > 0
        }
        flushes = [specs[p].monitoring.log.flush_seconds for p in self.projects]
        self.flush_seconds = min(flushes, default=5.0)
        self._queue: deque[Logged] = deque()
        self._queued = dict.fromkeys(self.projects, 0)
        self._bytes = dict.fromkeys(self.projects, 0)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._files = 0
        self._run_id = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"  # file names: unique per process
        self._pool: ProcessPoolExecutor | None = None
        self.shadow_counts = ShadowCounter()
        self._dropped_seen = dict.fromkeys(self.projects, 0)  # dropped, as of the last flush

    # -- the request path: no parsing, no disk --------------------------------------------

    def sampled(self, project: str) -> bool:
        """Whether this request of ``project`` is to be logged (decided before it runs)."""
        found = self.projects.get(project)
        return found is not None and (found.rate >= 1.0 or random.random() < found.rate)

    def offer(self, item: Logged) -> bool:
        """Queue a sampled request; False (and counted as dropped) when the queue is full."""
        size = len(item.body) + len(item.answer)
        project = self.projects[item.project]
        with self._lock:
            project.stats.offered += 1
            if (
                self._queued[item.project] >= project.queue_requests
                or self._bytes[item.project] + size > project.max_bytes
            ):
                project.stats.dropped += 1
                return False
            self._queue.append(item)
            self._queued[item.project] += 1
            self._bytes[item.project] += size
            if len(self._queue) == BATCH_REQUESTS:
                self._wake.set()
        return True

    def check(self) -> None:
        """Raise ``LogLocationError`` when a project logs and the log's place is unreachable
        (a missing bucket, wrong credentials): found at start, not at the first flush."""
        if self.projects:
            self.store.check()

    # -- the writer thread ----------------------------------------------------------------

    def start(self) -> None:
        """Start the writer thread (its worker process starts with the first large batch)."""
        if not self.projects or self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the writer after a last flush of what is queued."""
        if self._thread is None:
            return
        self._stop.set()
        self._wake.set()
        self._thread.join()
        self._thread = None
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.flush_seconds)
            self._wake.clear()
            self.flush()
        self.flush()

    def _write(self, batch: Batch) -> Written:
        """Write a batch: a large one in the worker process while the writer runs (here
        again should that process be gone), a small one here."""
        if len(batch.items) >= PROCESS_FROM and self._thread is not None:
            if self._pool is None:
                self._pool = ProcessPoolExecutor(
                    max_workers=1, mp_context=get_context("spawn"), initializer=worker_signals
                )
            try:
                return self._pool.submit(write_batch, batch).result()
            except BrokenProcessPool:
                log.warning("prediction log: the worker process is gone; writing here")
                self._pool = None
        return write_batch(batch)

    def _take(self) -> list[Logged]:
        with self._lock:
            items = list(self._queue)
            self._queue.clear()
            self._queued = dict.fromkeys(self.projects, 0)
            self._bytes = dict.fromkeys(self.projects, 0)
        return items

    def flush(self) -> int:
        """Write what is queued now: one file per project and UTC day (in the worker process
        once started, else here). Rows written."""
        written = 0
        groups: dict[tuple[str, dt.date], list[Logged]] = {}
        for item in self._take():
            day = dt.datetime.fromtimestamp(item.time, dt.UTC).date()
            groups.setdefault((item.project, day), []).append(item)
        shadows = {project: self._shadow_of(project) for project, _ in groups}
        for project, folder in shadows.items():
            self._count_dropped(project, folder)
        for (project, day), items in groups.items():
            stats = self.projects[project].stats
            self._files += 1
            name = f"{time.strftime('%H%M%S', time.gmtime())}-{self._run_id}-{self._files:06d}"
            batch = Batch(
                self.store,
                project,
                day,
                name,
                self.projects[project].columns,
                [(i.time, i.latency, i.body, i.answer) for i in items],
                shadows[project],
            )
            try:
                done = self._write(batch)
            except Exception as exc:  # the log must never stop serving; it counts its losses
                log.error("prediction log of %s: %d request(s) lost: %s", project, len(items), exc)
                stats.failed_requests += len(items)
                continue
            stats.written_requests += done.requests
            stats.failed_requests += len(items) - done.requests
            stats.written_rows += done.rows
            written += done.rows
            if batch.shadow is not None:
                self.shadow_counts.record(
                    project,
                    batch.shadow.name,
                    requests=done.shadow_requests,
                    rows=done.shadow_rows,
                    failed=done.shadow_failed,
                    error=done.shadow_error,
                )
        return written

    def _count_dropped(self, project: str, shadow: Path | None) -> None:
        """Samples dropped since the last flush were never shadowed: count them against
        the shadow attached now."""
        with self._lock:
            dropped = self.projects[project].stats.dropped
        new, self._dropped_seen[project] = dropped - self._dropped_seen[project], dropped
        if shadow is not None and new:
            self.shadow_counts.record(project, shadow.name, dropped=new)

    def _shadow_of(self, project: str) -> Path | None:
        if self.shadow is None:
            return None
        try:
            return self.shadow(project)
        except Exception as exc:  # the log goes on without the shadow
            log.error("prediction log of %s: shadow unavailable: %s", project, exc)
            return None

    # -- reporting ------------------------------------------------------------------------

    def stats(self) -> dict[str, LogStats]:
        with self._lock:
            return {p: LogStats(**vars(found.stats)) for p, found in self.projects.items()}

    def queued(self) -> int:
        with self._lock:
            return len(self._queue)


class PredictionLogMiddleware:
    """Keep the body and answer of sampled, successful predict requests for the log."""

    def __init__(self, app: ASGIApp, prediction_log: PredictionLog):
        self.app = app
        self.log = prediction_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = (
            PREDICT_PATH.match(scope["path"])
            if scope["type"] == "http" and scope["method"] == "POST"
            else None
        )
        if match is None or not self.log.sampled(match.group(1)):
            await self.app(scope, receive, send)
            return
        wall, start = time.time(), time.perf_counter()
        body: list[bytes] = []
        answer: list[bytes] = []
        status = 0

        async def receive_kept() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                body.append(message.get("body", b""))
            return message

        async def send_kept(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and status == 200:
                answer.append(message.get("body", b""))
            await send(message)

        await self.app(scope, receive_kept, send_kept)
        if status == 200:
            latency = time.perf_counter() - start
            self.log.offer(Logged(match.group(1), wall, latency, b"".join(body), b"".join(answer)))


class PredictionLogCollector(Collector):
    """The log's counts as Prometheus metrics, read when scraped (nothing on the hot path)."""

    def __init__(self, prediction_log: PredictionLog):
        self.log = prediction_log

    def collect(self) -> Iterator[Any]:
        stats = self.log.stats()
        families = {
            "offered": "Sampled predict requests offered to the prediction log.",
            "dropped": "Sampled requests dropped because the log's queue was full.",
            "written_requests": "Requests written to the prediction log.",
            "failed_requests": "Queued requests lost by the writer (unreadable or write error).",
        }
        for key, doc in families.items():
            family = CounterMetricFamily(
                f"mlplatform_prediction_log_{key}", doc, labels=["project"]
            )
            for project, st in stats.items():
                family.add_metric([project], getattr(st, key))
            yield family
        rows = CounterMetricFamily(
            "mlplatform_prediction_log_written_rows", "Rows written to the log.", labels=["project"]
        )
        for project, st in stats.items():
            rows.add_metric([project], st.written_rows)
        yield rows
        yield GaugeMetricFamily(
            "mlplatform_prediction_log_queued",
            "Requests waiting for the writer.",
            value=self.log.queued(),
        )
