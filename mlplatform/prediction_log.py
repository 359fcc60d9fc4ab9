"""Where and how the prediction log is stored: per project and UTC day, a folder of Parquet
files (one per flush of each serving process), written by ``serving.log_writer`` and read by
the monitoring asset and the review page's since-promotion panel.

The log lives under the home (``<home>/prediction_log``) unless
``MLPLATFORM_PREDICTION_LOG_URL`` names another place: a local folder (``/path`` or
``file:///path``) or object storage (``s3://bucket/prefix``; credentials, region and endpoint
come from the standard ``AWS_*`` environment variables, never from the URL).

Each row is one predicted input row: ``time`` (UTC), ``request`` (one id per request), ``row``
(its index in the request), ``bundle_id``, ``latency_ms`` (of the whole request), the
prediction (``label`` and ``proba.<class>``, or ``value``) and the logged input columns as
received, as text (JSON for non-strings), named ``input.<column>``.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.fs as pafs

LOG_FOLDER = "prediction_log"
INPUT_PREFIX = "input."
PROBA_PREFIX = "proba."
DAY_FORMAT = "%Y-%m-%d"
OBJECT_SCHEMES = ("s3", "gs")  # what pyarrow's filesystems reach (gs where built with GCS)
URL_HELP = "expected a folder, file:///path, s3://bucket/prefix or gs://bucket/prefix"


class LogLocationError(ValueError):
    """The prediction log's location is malformed or cannot be reached; says what to do."""


def log_url(value: str) -> str:
    """The log's location as a normalized URL (``file:///abs`` or ``s3://bucket/prefix``);
    raises :class:`LogLocationError` for a malformed one (credentials in it included)."""
    value = value.strip()
    parts = urlsplit(value)
    if parts.scheme in ("", "file"):
        path = Path(parts.path if parts.scheme else value).expanduser()
        if parts.scheme and parts.netloc not in ("", "localhost"):
            raise LogLocationError(f"{value!r}: a file URL names no host; {URL_HELP}")
        return path.resolve().as_uri()
    if parts.scheme not in OBJECT_SCHEMES:
        raise LogLocationError(f"scheme {parts.scheme!r} is not supported; {URL_HELP}")
    if "@" in parts.netloc or parts.password or parts.username:
        raise LogLocationError(
            "credentials do not belong in the URL: set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY (or the cloud's own credential chain) instead"
        )
    if not parts.netloc:
        raise LogLocationError(f"{parts.scheme}:// URL names no bucket; {URL_HELP}")
    if parts.query or parts.fragment:
        raise LogLocationError(
            "no options in the URL: endpoint and region come from AWS_ENDPOINT_URL and AWS_REGION"
        )
    prefix = parts.path.strip("/")
    return f"{parts.scheme}://{parts.netloc}" + (f"/{prefix}" if prefix else "")


# What pyarrow's object-storage clients read from the environment (a changed value, e.g. a
# rotated key, gets a new client).
CLIENT_ENVIRONMENT = (
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
)


def _filesystem(url: str) -> tuple[pafs.FileSystem, str]:
    """The pyarrow filesystem of a normalized log URL and the log's root path in it."""
    if url.startswith("file:"):
        import pyarrow.fs as pafs

        return pafs.LocalFileSystem(), urlsplit(url).path
    return _object_storage(url, tuple(os.environ.get(v) for v in CLIENT_ENVIRONMENT))


@functools.cache
def _object_storage(url: str, environment: tuple[str | None, ...]) -> tuple[pafs.FileSystem, str]:
    """One client per URL and environment, reused across flushes."""
    import pyarrow.fs as pafs

    filesystem, root = pafs.FileSystem.from_uri(url)
    return filesystem, root.rstrip("/")


@dataclass(frozen=True)
class LogStore:
    """The prediction log's folder tree, on the local disk or in object storage."""

    url: str  # normalized by ``log_url``

    @classmethod
    def under_home(cls, home: Path) -> LogStore:
        return cls(log_url(str(home / LOG_FOLDER)))

    @classmethod
    def at(cls, url: str | None, home: Path) -> LogStore:
        """The store at a normalized ``url``, or under ``home`` when there is none."""
        return cls(url) if url else cls.under_home(home)

    @property
    def local(self) -> bool:
        return self.url.startswith("file:")

    def _fs(self) -> tuple[pafs.FileSystem, str]:
        return _filesystem(self.url)

    def project_folder(self, project: str) -> str:
        return f"{self._fs()[1]}/{project}"

    def day_folder(self, project: str, day: dt.date) -> str:
        """The folder of one UTC day's log files (each flush of each server adds one file)."""
        return f"{self.project_folder(project)}/{day.strftime(DAY_FORMAT)}"

    def day_files(self, project: str, day: dt.date) -> list[str]:
        """The complete log files of one day (temporary files of a write in progress
        excluded), as paths in this store."""
        import pyarrow.fs as pafs

        filesystem, _ = self._fs()
        selector = pafs.FileSelector(self.day_folder(project, day), allow_not_found=True)
        found = filesystem.get_file_info(selector)
        names = (f.path for f in found if f.type == pafs.FileType.File)
        return sorted(p for p in names if p.endswith(".parquet") and not _hidden(p))

    def write(self, project: str, day: dt.date, name: str, table: pa.Table) -> str:
        """Write one log file atomically: on disk under a temporary name then renamed; in
        object storage as one upload from memory (an object appears whole or not at all)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        filesystem, _ = self._fs()
        folder = self.day_folder(project, day)
        path = f"{folder}/{name}.parquet"
        if self.local:
            Path(folder).mkdir(parents=True, exist_ok=True)
            tmp = Path(folder) / f".{name}.{uuid.uuid4().hex}.tmp"
            try:
                pq.write_table(table, tmp)
                os.replace(tmp, path)
            finally:
                tmp.unlink(missing_ok=True)
            return path
        buffer = pa.BufferOutputStream()
        pq.write_table(table, buffer)
        with filesystem.open_output_stream(path) as out:
            out.write(buffer.getvalue())
        return path

    def read(self, path: str, columns: list[str] | None = None) -> pa.Table:
        import pyarrow.parquet as pq

        return pq.read_table(path, columns=columns, filesystem=self._fs()[0])

    def column_names(self, path: str) -> list[str]:
        import pyarrow.parquet as pq

        return list(pq.read_schema(path, filesystem=self._fs()[0]).names)

    def check(self) -> None:
        """Raise :class:`LogLocationError` (naming the place and what to do) when the log's
        bucket cannot be reached or its folder cannot be written (it is made when missing)."""
        import pyarrow.fs as pafs

        if self.local:
            folder = Path(self._fs()[1])
            try:
                folder.mkdir(parents=True, exist_ok=True)
                probe = folder / f".probe-{uuid.uuid4().hex}"
                probe.touch()
                probe.unlink()
            except OSError as exc:
                raise LogLocationError(
                    f"prediction log {folder}: cannot write there ({exc.strerror}); mount it "
                    "writable or set MLPLATFORM_PREDICTION_LOG_URL to a bucket or folder"
                ) from None
            return
        try:
            filesystem, root = self._fs()
            bucket = filesystem.get_file_info(root.split("/", 1)[0])
        except OSError as exc:
            raise LogLocationError(
                f"prediction log {self.url}: cannot reach it ({_first_line(exc)}); check "
                "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_REGION and AWS_ENDPOINT_URL"
            ) from None
        if bucket.type != pafs.FileType.Directory:
            raise LogLocationError(
                f"prediction log {self.url}: bucket {bucket.path!r} does not exist; create it "
                "(the platform never creates buckets) or set MLPLATFORM_PREDICTION_LOG_URL"
            )


def _hidden(path: str) -> bool:
    return path.rsplit("/", 1)[-1].startswith(".")


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


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
