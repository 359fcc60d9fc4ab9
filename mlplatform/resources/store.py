"""Where assets live: a Parquet IO manager for DataFrames and a store for files of assets."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dagster as dg
from pydantic import PrivateAttr

from mlplatform.free_memory import return_free_memory
from mlplatform.prediction_log import LogStore

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa
    from upath import UPath

# pandas and pyarrow load on the first read or write: defining assets (every code server and
# run worker) does not pay for them, and a run that stores no DataFrame never imports them.

ATTRS_KEY = b"mlplatform.attrs"
ROW_GROUP_ROWS = 1 << 17
SAMPLE_ROWS = 1 << 14  # rows that tell whether a column repeats its values


def is_local(path: UPath) -> bool:
    """A path on this machine's file system (not object storage)."""
    return path.protocol in ("", "file", "local")


def write_parquet(frame: pd.DataFrame, path: UPath) -> None:
    """Write a DataFrame (and its ``attrs``) as Parquet atomically: temp file, then rename."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(frame, preserve_index=False)
    meta = dict(table.schema.metadata or {})
    meta[ATTRS_KEY] = json.dumps(frame.attrs, default=str).encode()
    table = table.replace_schema_metadata(meta)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    with tmp.open("wb") as fh:
        # row groups a reader can take one at a time (training windows read in batches)
        pq.write_table(
            table,
            fh,
            row_group_size=ROW_GROUP_ROWS,
            use_dictionary=repeating_columns(table),
            write_statistics=statistics_columns(table),
        )
    if is_local(path):
        os.replace(tmp.path, path.path)
    else:
        tmp.fs.mv(tmp.path, path.path)


def repeating_columns(table: pa.Table) -> list[str]:
    """The columns worth a dictionary: at most half of the values of their first SAMPLE_ROWS
    rows distinct. The others (ids, continuous measures) are written plain instead of filling
    a dictionary the writer then drops (the default tries one for every column); compression
    and statistics stay as they are."""
    import pyarrow as pa
    import pyarrow.compute as pc

    rows = min(SAMPLE_ROWS, table.num_rows)
    repeating = []
    for name in table.column_names:
        try:
            distinct = pc.count_distinct(table.column(name).slice(0, rows)).as_py()
        except pa.ArrowNotImplementedError:  # a type without the kernel: the default
            distinct = 0
        if 2 * distinct <= rows:
            repeating.append(name)
    return repeating


def statistics_columns(table: pa.Table) -> list[str]:
    """The columns whose row groups get min/max statistics: all but text. Text statistics
    (the smallest and largest string of each row group) were 28% of writing a 1M-row raw
    partition, and nothing here filters on them; the dictionary pages of repeating text
    columns still tell a reader which values a row group holds."""
    import pyarrow as pa

    text = (pa.string(), pa.large_string(), pa.string_view())
    return [f.name for f in table.schema if f.type not in text]


def read_parquet(path: UPath, columns: list[str] | None = None) -> pd.DataFrame:
    """A stored DataFrame (only ``columns`` when given) with its ``attrs``; Arrow's buffers
    are freed column by column as pandas takes them, so the file is not held twice."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if is_local(path):
        # Arrow's own file: over a Python one, Arrow may release it from a thread of its own
        # after the read, which aborts the process when that happens as it exits
        with pa.OSFile(path.path) as fh:
            table = pq.read_table(fh, columns=columns)
    else:
        with path.open("rb") as fh:
            table = pq.read_table(fh, columns=columns)
    raw = (table.schema.metadata or {}).get(ATTRS_KEY)
    frame = table.to_pandas(split_blocks=True, self_destruct=True)
    del table
    frame.attrs = json.loads(raw) if raw else {}
    return frame


class FrameHandover:
    """A DataFrame handed to the Parquet IO manager, which stores it and drops it: a run
    executed in process (``execute_in_process``) keeps every output value until the run ends,
    so a partition's frame returned as such would outlive its step and add to the next
    step's memory.

    With ``pass_on`` the IO manager keeps the frame for the next step of the same run that
    loads an input (a data run's next step reads the partition just stored) and gives it
    that frame instead of reading the file back; it lets go of it at that step's first load,
    or when the run ends, so the frame never outlives the step that follows."""

    def __init__(self, frame: pd.DataFrame, pass_on: bool = False) -> None:
        self._frame: pd.DataFrame | None = frame
        self.pass_on = pass_on

    def take(self) -> pd.DataFrame:
        """The frame, once; this handover holds nothing after."""
        frame, self._frame = self._frame, None
        if frame is None:
            raise RuntimeError("this DataFrame was already handed over")
        return frame


def partition_path(base: str, key: dg.AssetKey, partition: str | None) -> UPath:
    """Where the Parquet file of one asset partition lives."""
    # upath scans the installed packages' entry points when imported (~0.1 s): on first use
    from upath import UPath

    return UPath(base).joinpath(*key.path, f"{partition or '__all__'}.parquet")


class ParquetIOManager(dg.ConfigurableIOManager):
    """DataFrames as ``<base>/<asset key>/<partition>.parquet``; never pickled.

    A multi-partition input (a training window) loads as ``{partition_key: DataFrame}``.
    """

    base_path: str
    # (path, file signature, frame) of a FrameHandover with pass_on, kept for the next load
    _passed: tuple[str, tuple[int, int, int], pd.DataFrame] | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self._passed = None

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        self._passed = None

    def _path(self, key: dg.AssetKey, partition: str | None) -> UPath:
        return partition_path(self.base_path, key, partition)

    def _pass_on(self, path: UPath, frame: pd.DataFrame) -> None:
        """Keep what was just written to a local file for the next load of that file."""
        if is_local(path):
            self._passed = (str(path.path), _signature(path.path), frame)

    def _passed_frame(self, path: UPath, columns: list[str] | None) -> pd.DataFrame | None:
        """The frame kept for ``path`` when the file is still the one written from it (same
        inode, size and time), only ``columns``; None otherwise. Either way it is let go."""
        passed, self._passed = self._passed, None
        if passed is None or path.protocol not in ("", "file", "local"):
            return None
        where, signature, frame = passed
        if where != str(path.path) or _signature(where) != signature:
            return None
        out = frame[list(columns)] if columns else frame
        out.attrs = dict(frame.attrs)
        return out

    def handle_output(
        self,
        context: dg.OutputContext,
        obj: pd.DataFrame | FrameHandover | dict[str, pd.DataFrame] | None,
    ) -> None:
        """Write one partition (a DataFrame, or one handed over), or each partition of a run
        over a range (a ``{partition_key: DataFrame}``, or a DataFrame when the range holds
        one partition)."""
        self._passed = None
        if obj is None:
            return
        pass_on = False
        if isinstance(obj, FrameHandover):
            pass_on = obj.pass_on
            obj = obj.take()
        import pandas as pd

        name = context.asset_key.to_user_string()
        if not context.has_asset_partitions:
            frames: dict[str | None, Any] = {None: obj}
        else:
            keys = list(context.asset_partition_keys)
            if isinstance(obj, dict):
                missing = sorted(set(keys) - set(obj))
                if missing:
                    raise ValueError(f"{name}: no DataFrame for partition(s) {', '.join(missing)}")
                frames = {k: obj[k] for k in keys}
            elif len(keys) == 1:
                frames = {keys[0]: obj}
            else:
                raise TypeError(
                    f"{name}: a run over {len(keys)} partitions must return one DataFrame per "
                    "partition ({partition_key: DataFrame})"
                )
        paths = []
        for partition, frame in frames.items():
            if not isinstance(frame, pd.DataFrame):
                raise TypeError(f"{name}: expected a DataFrame, got {type(frame).__name__}")
            path = self._path(context.asset_key, partition)
            write_parquet(frame, path)
            paths.append(path)
        if pass_on and len(frames) == 1:
            self._pass_on(paths[0], next(iter(frames.values())))
        frames.clear()  # what is not passed on can be freed now
        obj = frame = None
        return_free_memory()  # the step's temporaries, before the next step of this run
        if len(paths) == 1:
            context.add_output_metadata({"path": dg.MetadataValue.path(str(paths[0]))})

    def load_input(self, context: dg.InputContext) -> Any:
        key = context.asset_key
        columns = (context.definition_metadata or {}).get("columns")
        if not context.has_asset_partitions:
            path = self._path(key, None)
            passed = self._passed_frame(path, columns)
            return passed if passed is not None else read_parquet(path, columns)
        keys = list(context.asset_partition_keys)
        frames = {}
        for pk in keys:
            path = self._path(key, pk)
            passed = self._passed_frame(path, columns) if len(keys) == 1 else None
            self._passed = None
            if passed is not None:
                frames[pk] = passed
                continue
            if not path.exists():
                raise FileNotFoundError(
                    f"{key.to_user_string()} partition {pk} is not materialized ({path})"
                )
            frames[pk] = read_parquet(path, columns)
        return_free_memory()  # what reading freed, before the step works on it
        if len(keys) == 1 and context.upstream_output is not None and not _wants_dict(context):
            return frames[keys[0]]
        return frames


def _signature(path: str) -> tuple[int, int, int]:
    """What tells one written file from the next: inode, size and modification time (an
    atomic rewrite is a new inode); a missing file matches nothing."""
    try:
        found = os.stat(path)
    except OSError:
        return (-1, -1, -1)
    return (found.st_ino, found.st_size, found.st_mtime_ns)


def _wants_dict(context: dg.InputContext) -> bool:
    found = context.definition_metadata
    return found.get("partitions") == "dict" if found else False


class ArtifactStore(dg.ConfigurableResource):
    """Files that are not DataFrames: model files, evaluations, reports, bundles."""

    home: str
    assets_dir: str
    serve_url: str | None = None  # the serving API: reports link to its review page
    prediction_log_url: str | None = None  # default: the folder under home

    @property
    def prediction_log(self) -> LogStore:
        return LogStore.at(self.prediction_log_url, Path(self.home))

    @property
    def root(self) -> Path:
        return Path(self.home)

    def read_partitions(self, key: dg.AssetKey, partitions: list[str]) -> dict[str, pd.DataFrame]:
        """Stored partitions of a DataFrame asset (those not stored are left out)."""
        out = {}
        for pk in partitions:
            path = partition_path(self.assets_dir, key, pk)
            if path.exists():
                out[pk] = read_parquet(path)
        return out

    def partition_files(self, key: dg.AssetKey, partitions: list[str]) -> dict[str, UPath]:
        """The Parquet files of the stored partitions among ``partitions``."""
        paths = {pk: partition_path(self.assets_dir, key, pk) for pk in partitions}
        return {pk: path for pk, path in paths.items() if path.exists()}

    def stored_rows(self, key: dg.AssetKey, partitions: list[str]) -> dict[str, int]:
        """Row counts of the stored partitions among ``partitions`` (from the Parquet footers,
        without reading the data)."""
        import pyarrow.parquet as pq

        out = {}
        for pk in partitions:
            path = partition_path(self.assets_dir, key, pk)
            if path.exists():
                with path.open("rb") as fh:
                    out[pk] = pq.ParquetFile(fh).metadata.num_rows
        return out

    def evaluation_file(self, project: str, cutoff: str) -> Path:
        return self.root / "evaluations" / project / f"{cutoff}.json"

    def report_file(self, project: str, cutoff: str) -> Path:
        return self.root / "reports" / project / f"{cutoff}.html"

    def report_link(self, project: str, cutoff: str) -> str:
        """Where a browser opens a cutoff's report: the serving app's review page (it asks
        for a reader token, then opens the report) when a serving URL is configured, else
        the file."""
        if self.serve_url:
            return f"{self.serve_url.rstrip('/')}/review/{project}#report-{cutoff}"
        return self.report_file(project, cutoff).resolve().as_uri()

    @property
    def bundles_dir(self) -> Path:
        return self.root / "bundles"

    @property
    def staging_dir(self) -> Path:
        return self.root / "staging"

    def write_json(self, path: Path, data: object) -> Path:
        """Write JSON atomically."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True), encoding="utf-8")
        os.replace(tmp, path)
        return path

    def read_json(self, path: Path) -> Any:
        return json.loads(path.read_text(encoding="utf-8"))
