"""The prediction log of a serving process: a sample of predict requests, written off the hot
path.

``PredictionLogMiddleware`` (pure ASGI, around the fast path and the FastAPI route) decides per
request whether it is sampled (``monitoring.log.rate``); a sampled request's body and answer
bytes are kept as they pass and, on a 200, offered to ``PredictionLog``'s bounded queue
(``queue_requests``, ``queue_mb``) without any parsing. A full queue drops the request and
counts it; nothing on the request path waits for the writer or the disk. A background thread
parses what was queued, keeps the logged columns only (``monitoring.log.columns``) and writes
one Parquet file per project and UTC day per flush, atomically (``mlplatform.prediction_log``
says where). Tokens and headers are never looked at.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import random
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mlplatform.prediction_log import INPUT_PREFIX, PROBA_PREFIX, day_dir
from mlplatform.spec import ProjectSpec

log = logging.getLogger(__name__)
BATCH_REQUESTS = 1_000  # the writer starts early once this many requests wait
YIELD_EVERY = 64  # requests parsed between two hand-backs of the interpreter to the server
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

    def __init__(self, specs: Mapping[str, ProjectSpec], home: Path):
        self.home = home
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
        self._requests = 0
        self._run_id = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"  # request ids: unique per process

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

    # -- the writer thread ----------------------------------------------------------------

    def start(self) -> None:
        """Start the writer (pyarrow is imported here, not by the first request)."""
        if not self.projects or self._thread is not None:
            return
        import pyarrow  # noqa: F401 - loaded once, before traffic

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

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.flush_seconds)
            self._wake.clear()
            self.flush()
        self.flush()

    def _take(self) -> list[Logged]:
        with self._lock:
            items = list(self._queue)
            self._queue.clear()
            self._queued = dict.fromkeys(self.projects, 0)
            self._bytes = dict.fromkeys(self.projects, 0)
        return items

    def flush(self) -> int:
        """Write what is queued now: one file per project and UTC day. Rows written."""
        written = 0
        groups: dict[tuple[str, dt.date], list[Logged]] = {}
        for item in self._take():
            day = dt.datetime.fromtimestamp(item.time, dt.UTC).date()
            groups.setdefault((item.project, day), []).append(item)
        for (project, day), items in groups.items():
            stats = self.projects[project].stats
            try:
                columns, requests = self._columns(project, items)
                rows = len(columns["row"])
                if rows:
                    self._write(project, day, columns)
            except Exception as exc:  # the log must never stop serving; it counts its losses
                log.error("prediction log of %s: %d request(s) lost: %s", project, len(items), exc)
                stats.failed_requests += len(items)
                continue
            stats.written_requests += requests
            stats.failed_requests += len(items) - requests
            stats.written_rows += rows
            written += rows
        return written

    def _columns(self, project: str, items: list[Logged]) -> tuple[dict[str, list[Any]], int]:
        """Column lists of the rows of ``items``, and how many requests could be read."""
        logged = self.projects[project].columns
        out: dict[str, list[Any]] = {
            "time": [],
            "request": [],
            "row": [],
            "bundle_id": [],
            "latency_ms": [],
            "label": [],
            "value": [],
        }
        inputs: dict[str, list[Any]] = {c: [] for c in logged}
        probas: dict[str, list[float | None]] = {}
        requests = 0
        for count, item in enumerate(items):
            if count % YIELD_EVERY == YIELD_EVERY - 1:
                time.sleep(0)  # let the event loop answer requests between batches of parsing
            parsed = _parsed(item)
            if parsed is None:
                continue
            rows, bundle_id, predictions = parsed
            requests += 1
            self._requests += 1
            before, k = len(out["row"]), len(rows)
            out["time"] += [item.time] * k
            out["request"] += [f"{self._run_id}-{self._requests}"] * k
            out["row"] += range(k)
            out["bundle_id"] += [bundle_id] * k
            out["latency_ms"] += [item.latency * 1000.0] * k
            out["label"] += [p.get("label") for p in predictions]
            out["value"] += [p.get("value") for p in predictions]
            shares = [p.get("probabilities") or {} for p in predictions]
            for cls in {c for share in shares[:1] for c in share} | set(probas):
                column = probas.setdefault(cls, [None] * before)
                column += [share.get(cls) for share in shares]
            for c in logged:
                inputs[c] += [_as_text(row.get(c)) for row in rows]
        out.update({INPUT_PREFIX + c: v for c, v in inputs.items()})
        out.update({PROBA_PREFIX + c: v for c, v in probas.items()})
        return out, requests

    def _write(self, project: str, day: dt.date, columns: dict[str, list[Any]]) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        types = {"time": pa.timestamp("us", tz="UTC"), "row": pa.int32(), "value": pa.float64()}
        arrays = {}
        for name, values in columns.items():
            if name == "time":
                values = [int(t * 1_000_000) for t in values]
            kind = types.get(name)
            if kind is None:
                kind = pa.float64() if name.startswith(PROBA_PREFIX) else pa.string()
            if name == "latency_ms":
                kind = pa.float64()
            arrays[name] = pa.array(values, type=kind)
        table = pa.table(arrays)
        folder = day_dir(self.home, project, day)
        folder.mkdir(parents=True, exist_ok=True)
        self._files += 1
        name = f"{time.strftime('%H%M%S', time.gmtime())}-{os.getpid()}-{self._files:06d}"
        tmp = folder / f".{name}.{uuid.uuid4().hex}.tmp"
        try:
            pq.write_table(table, tmp)
            os.replace(tmp, folder / f"{name}.parquet")
        finally:
            tmp.unlink(missing_ok=True)

    # -- reporting ------------------------------------------------------------------------

    def stats(self) -> dict[str, LogStats]:
        with self._lock:
            return {p: LogStats(**vars(found.stats)) for p, found in self.projects.items()}

    def queued(self) -> int:
        with self._lock:
            return len(self._queue)


def _parsed(item: Logged) -> tuple[list[Any], str, list[dict[str, Any]]] | None:
    """The rows of a request and the bundle id and predictions of its answer; None when
    they cannot be read (then the request is counted as failed)."""
    try:
        rows = json.loads(item.body)["rows"]
        answer = json.loads(item.answer)
    except (ValueError, KeyError, TypeError):
        return None
    predictions = answer.get("predictions")
    if not isinstance(rows, list) or not isinstance(predictions, list):
        return None
    if len(rows) != len(predictions) or not all(isinstance(r, dict) for r in rows):
        return None
    return rows, str(answer.get("bundle_id")), predictions


def _as_text(value: Any) -> str | None:
    """A received value as text: strings as they are, anything else as JSON."""
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value)


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
