"""Where and how the prediction log is stored: one folder per project and UTC day of daily
Parquet files, written by ``serving.log_writer`` and read by the monitoring asset.

Each row is one predicted input row: ``time`` (UTC), ``request`` (one id per request), ``row``
(its index in the request), ``bundle_id``, ``latency_ms`` (of the whole request), the
prediction (``label`` and ``proba.<class>``, or ``value``) and the logged input columns as
received, as text (JSON for non-strings), named ``input.<column>``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import uuid
from pathlib import Path
from typing import Any

LOG_FOLDER = "prediction_log"
INPUT_PREFIX = "input."
PROBA_PREFIX = "proba."
DAY_FORMAT = "%Y-%m-%d"


def project_log_dir(home: Path, project: str) -> Path:
    return home / LOG_FOLDER / project


def day_dir(home: Path, project: str, day: dt.date) -> Path:
    """The folder of one UTC day's log files (each flush of each server adds one file)."""
    return project_log_dir(home, project) / day.strftime(DAY_FORMAT)


def day_files(home: Path, project: str, day: dt.date) -> list[Path]:
    """The complete log files of one day (temporary files of a write in progress excluded)."""
    folder = day_dir(home, project, day)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob("*.parquet") if not p.name.startswith("."))


MONITORING_FOLDER = "monitoring"


def monitoring_summary_dir(home: Path, project: str) -> Path:
    """Where the monitoring asset leaves one JSON summary per day (read by serving)."""
    return home / MONITORING_FOLDER / project


def write_monitoring_summary(
    home: Path, project: str, day: dt.date, summary: dict[str, Any]
) -> Path:
    """Write one day's monitoring summary (replacing an earlier run's) atomically."""
    folder = monitoring_summary_dir(home, project)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{day.strftime(DAY_FORMAT)}.json"
    tmp = folder / f".{path.name}.{uuid.uuid4().hex}.tmp"
    try:
        tmp.write_text(json.dumps(summary), "utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
