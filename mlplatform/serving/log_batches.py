"""Logged requests to Parquet: a batch of one project and UTC day (the request and answer
bytes as they passed) parsed into columns, predicted by the shadow bundle when one is attached,
and written as one file, atomically. Runs in the writer's thread or its worker process."""

from __future__ import annotations

import datetime as dt
import json
import logging
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from mlplatform.prediction_log import INPUT_PREFIX, PROBA_PREFIX, LogStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Batch:
    """Sampled requests of one project and UTC day, for one log file."""

    store: LogStore
    project: str
    day: dt.date
    name: str  # file name without suffix; request ids start with it
    columns: list[str]  # logged input columns
    items: list[tuple[float, float, bytes, bytes]]  # time, latency, body, answer
    shadow: Path | None = None  # the shadow bundle's folder: predict the rows with it too


class Written(NamedTuple):
    """What a batch gave: requests read, rows written, and the shadow's share of them."""

    requests: int
    rows: int
    shadow_requests: int = 0  # requests the shadow bundle predicted
    shadow_rows: int = 0  # their rows
    shadow_failed: int = 0  # rows it could not predict
    shadow_error: str | None = None  # why it failed on the whole batch


def worker_signals() -> None:
    """The worker ignores the signals that stop the server (they reach its whole process
    group): it finishes the last batch and is stopped by the writer."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def write_batch(batch: Batch) -> Written:
    """Parse a batch and write it as one Parquet file, atomically. Runs in the writer's
    thread or its worker process."""
    columns, requests, shadow_error = batch_columns(batch)
    rows = len(columns["row"])
    if rows:
        write_columns(batch.store, batch.project, batch.day, batch.name, columns)
    if batch.shadow is None:
        return Written(requests, rows)
    shadowed = columns.get("shadow_bundle_id", [None] * rows)  # absent: it failed
    taken = [r for r, b in zip(columns["request"], shadowed, strict=True) if b is not None]
    return Written(requests, rows, len(set(taken)), len(taken), rows - len(taken), shadow_error)


def batch_columns(batch: Batch) -> tuple[dict[str, list[Any]], int, str | None]:
    """Column lists of the rows of a batch, how many of its requests could be read, and
    why the shadow bundle failed on it (None when it did not)."""
    out: dict[str, list[Any]] = {
        "time": [],
        "request": [],
        "row": [],
        "bundle_id": [],
        "latency_ms": [],
        "label": [],
        "value": [],
    }
    inputs: dict[str, list[Any]] = {c: [] for c in batch.columns}
    probas: dict[str, list[float | None]] = {}
    requests = 0
    bodies: list[tuple[bytes, int]] = []
    for number, (at, latency, body, answer) in enumerate(batch.items):
        parsed = _parsed(body, answer)
        if parsed is None:
            continue
        rows, bundle_id, predictions = parsed
        requests += 1
        bodies.append((body, len(rows)))
        before, k = len(out["row"]), len(rows)
        out["time"] += [at] * k
        out["request"] += [f"{batch.name}-{number}"] * k
        out["row"] += range(k)
        out["bundle_id"] += [bundle_id] * k
        out["latency_ms"] += [latency * 1000.0] * k
        out["label"] += [p.get("label") for p in predictions]
        out["value"] += [p.get("value") for p in predictions]
        shares = [p.get("probabilities") or {} for p in predictions]
        for cls in {c for share in shares[:1] for c in share} | set(probas):
            column = probas.setdefault(cls, [None] * before)
            column += [share.get(cls) for share in shares]
        for c in batch.columns:
            inputs[c] += [_as_text(row.get(c)) for row in rows]
    out.update({INPUT_PREFIX + c: v for c, v in inputs.items()})
    out.update({PROBA_PREFIX + c: v for c, v in probas.items()})
    shadow_error = None
    if batch.shadow is not None and bodies:
        from mlplatform.serving.shadow import shadow_columns

        try:
            out.update(shadow_columns(batch.shadow, bodies))
        except Exception as exc:  # the shadow never costs production's log
            log.error("prediction log: shadow bundle %s failed: %s", batch.shadow.name, exc)
            shadow_error = f"{type(exc).__name__}: {exc}".replace(
                str(batch.shadow.parent), "bundles"
            )
    return out, requests, shadow_error


def write_columns(
    store: LogStore, project: str, day: dt.date, name: str, columns: dict[str, list[Any]]
) -> str:
    """Write the column lists of logged rows as one log file of ``project`` and ``day``."""
    import pyarrow as pa

    arrays = {}
    for key, values in columns.items():
        if key == "time":
            arrays[key] = pa.array(
                [int(t * 1_000_000) for t in values], type=pa.timestamp("us", tz="UTC")
            )
        elif key == "row":
            arrays[key] = pa.array(values, type=pa.int32())
        elif key in ("value", "latency_ms", "shadow_value") or key.startswith(PROBA_PREFIX):
            arrays[key] = pa.array(values, type=pa.float64())
        else:
            arrays[key] = pa.array(values, type=pa.string())
    return store.write(project, day, name, pa.table(arrays))


def _parsed(body: bytes, answer_bytes: bytes) -> tuple[list[Any], str, list[dict[str, Any]]] | None:
    """The rows of a request and the bundle id and predictions of its answer; None when
    they cannot be read (then the request is counted as failed)."""
    try:
        rows = json.loads(body)["rows"]
        answer = json.loads(answer_bytes)
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
