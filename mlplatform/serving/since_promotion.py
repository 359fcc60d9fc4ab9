"""The review page's "since promotion" panel, read from files (no dagster): traffic and shadow
agreement from the prediction log, live drift and decay from the monitoring asset's daily
summaries (``mlplatform.prediction_log.monitoring_summary_dir``).

Agreement of a shadow bundle with production is measured on the logged rows both predicted:
the same label (classification), or values within ``VALUE_TOLERANCE`` of each other relative
to production's value (regression). Where the log holds a ``label`` of the truth (not yet), a
live metric would sit here; the monitoring asset's decay check covers production.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from mlplatform.prediction_log import LogStore, monitoring_summary_dir

log = logging.getLogger(__name__)
VALUE_TOLERANCE = 0.05
MAX_DAYS = 92  # the panel reads at most this many days of log
PANEL_COLUMNS = {"time", "request", "row", "latency_ms", "label", "value"} | {
    "shadow_bundle_id",
    "shadow_label",
    "shadow_value",
}


class Agreement(BaseModel):
    """How often a shadow bundle agreed with production on logged rows."""

    shadow_bundle_id: str
    rows: int  # rows both predicted
    agreed: int
    rate: float | None  # agreed / rows; None without rows
    mean_abs_difference: float | None = None  # regression only


class Traffic(BaseModel):
    requests: int
    rows: int
    latency_p50_ms: float | None
    latency_p95_ms: float | None


class DaySummary(BaseModel):
    """One day of the monitoring asset, as it wrote it."""

    day: str  # the period's first day
    end: str | None = None  # the day after its last (a data partition's period); None: one day
    requests: int = 0
    rows: int = 0
    drifted: int | None = None  # inputs or predictions that moved
    drift: str | None = None
    decay_passed: bool | None = None  # None: no labels for the day yet
    decay_metric: str | None = None
    decay_live: float | None = None
    decay_holdout: float | None = None
    decay: str | None = None
    shadow_bundle_id: str | None = None  # the shadow candidate on that day's labels
    shadow_live: float | None = None


class SincePromotionOut(BaseModel):
    project: str
    production: str | None
    promoted_at: dt.datetime | None
    traffic: Traffic
    shadow: Agreement | None
    monitoring: list[DaySummary]


def agreement(
    shadow_bundle_id: str,
    production: list[Any],
    shadow: list[Any],
    shadow_ids: list[Any],
    *,
    regression: bool,
) -> Agreement:
    """Agreement of ``shadow_bundle_id`` with production over rows where it predicted: labels
    equal, or values within ``VALUE_TOLERANCE`` relative to production's."""
    pairs = [
        (p, s)
        for p, s, sid in zip(production, shadow, shadow_ids, strict=True)
        if sid == shadow_bundle_id and p is not None and s is not None
    ]
    if regression:
        pairs = [(float(p), float(s)) for p, s in pairs]
        agreed = sum(abs(p - s) <= VALUE_TOLERANCE * max(abs(p), 1e-12) for p, s in pairs)
        mad = sum(abs(p - s) for p, s in pairs) / len(pairs) if pairs else None
    else:
        agreed, mad = sum(p == s for p, s in pairs), None
    rate = agreed / len(pairs) if pairs else None
    return Agreement(
        shadow_bundle_id=shadow_bundle_id,
        rows=len(pairs),
        agreed=int(agreed),
        rate=rate,
        mean_abs_difference=mad,
    )


def read_log(store: LogStore, project: str, since: dt.datetime) -> dict[str, list[Any]]:
    """The log's rows logged at or after ``since`` (UTC), as column lists."""
    import pyarrow as pa
    import pyarrow.compute as pc

    today = dt.datetime.now(dt.UTC).date()
    first = max(since.date(), today - dt.timedelta(days=MAX_DAYS - 1))
    tables = []
    for n in range((today - first).days + 1):
        for path in store.day_files(project, first + dt.timedelta(days=n)):
            try:
                names = set(store.column_names(path)) & PANEL_COLUMNS
                tables.append(store.read(path, columns=sorted(names)))
            except (OSError, pa.ArrowException) as exc:
                log.warning("%s: unreadable log file %s: %s", project, path, exc)
    if not tables:
        return {}
    table = pa.concat_tables(tables, promote_options="default")
    table = table.filter(
        pc.greater_equal(table["time"], pa.scalar(since, pa.timestamp("us", "UTC")))
    )
    return table.to_pydict()


def traffic(columns: dict[str, list[Any]]) -> Traffic:
    latencies: dict[str, float] = dict(
        zip(columns.get("request", []), columns.get("latency_ms", []), strict=True)
    )
    ordered = sorted(latencies.values())

    def quantile(q: float) -> float | None:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else None

    return Traffic(
        requests=len(latencies),
        rows=len(columns.get("row", [])),
        latency_p50_ms=quantile(0.5),
        latency_p95_ms=quantile(0.95),
    )


def shadow_agreement(
    columns: dict[str, list[Any]], shadow_bundle_id: str, regression: bool
) -> Agreement:
    key = "value" if regression else "label"
    rows = len(columns.get("row", []))
    return agreement(
        shadow_bundle_id,
        columns.get(key, [None] * rows),
        columns.get(f"shadow_{key}", [None] * rows),
        columns.get("shadow_bundle_id", [None] * rows),
        regression=regression,
    )


LONGEST_PERIOD_DAYS = 31  # a monitoring period is a day, a week or a month


def monitoring_days(home: Path, project: str, since: dt.datetime) -> list[DaySummary]:
    """The monitoring asset's summaries of the periods that end after ``since``, oldest
    first."""
    folder = monitoring_summary_dir(home, project)
    first = since.date()
    found = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        if path.stem < (first - dt.timedelta(days=LONGEST_PERIOD_DAYS)).isoformat():
            continue
        try:
            summary = DaySummary.model_validate(json.loads(path.read_text("utf-8")))
            day = dt.date.fromisoformat(summary.day)
            end = dt.date.fromisoformat(summary.end) if summary.end else day + dt.timedelta(1)
        except ValueError as exc:
            log.warning("%s: unreadable monitoring summary %s: %s", project, path.name, exc)
            continue
        if end > first:
            found.append(summary)
    return found
