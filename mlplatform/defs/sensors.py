"""Landing sensor: a new or changed landing file launches a run for exactly its partition.

"Changed" is decided against the instance, not only the sensor's cursor: a file whose sha256
equals the data version of the latest ``raw`` materialization of its partition was already
ingested (by the CLI, a backfill or an earlier daemon) and launches nothing.
"""

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg

from mlplatform.defs.partitions import data_partitions
from mlplatform.digests import stream_sha256
from mlplatform.landing import LandingRefusedError, check_landing_file, open_landing_file, shown
from mlplatform.resources.store import ArtifactStore
from mlplatform.spec import ProjectSpec


@dataclass
class LandingScan:
    """What one look at the landing folder found."""

    seen: dict[str, list] = field(default_factory=dict)  # name -> [mtime_ns, size, sha256]
    changed: list[tuple[str, str]] = field(default_factory=list)  # new or changed (key, sha)
    stray: list[str] = field(default_factory=list)  # names that match no partition key
    refused: list[str] = field(default_factory=list)  # "name: reason", never read
    new_refusals: list[str] = field(default_factory=list)  # of those, not refused last time


def scan_landing(spec: ProjectSpec, home: Path, known: dict[str, list]) -> LandingScan:
    """Files of the landing folder as {name: [mtime_ns, size, sha256]} (hashing only files
    whose size or mtime changed), new or changed (partition, sha256), stray file names and
    refused files (too large, not regular, a link out of the folder: judged by stat alone,
    and remembered as [mtime_ns, size, "refused: reason"] so each is logged once)."""
    keys = set(data_partitions(spec).get_partition_keys())
    by_name = {spec.data.filename.format(partition=k): k for k in keys}
    landing = spec.landing_dir(home)
    out = LandingScan()
    if not landing.is_dir():
        return out
    for path in sorted(landing.iterdir()):
        if path.name.startswith(".") or path.is_dir():
            continue
        if path.name not in by_name:
            out.stray.append(path.name)
            continue
        before = known.get(path.name)
        try:
            stat = check_landing_file(path, spec.data.max_file_mb)
        except LandingRefusedError as exc:
            try:
                st = path.lstat()
            except OSError:  # gone since the folder was listed
                continue
            out.seen[path.name] = [st.st_mtime_ns, st.st_size, f"refused: {exc.reason}"]
            out.refused.append(f"{shown(path.name)}: {exc.reason}")
            if before != out.seen[path.name]:
                out.new_refusals.append(out.refused[-1])
            continue
        unchanged = before is not None and before[:2] == [stat.st_mtime_ns, stat.st_size]
        if before is not None and unchanged and not str(before[2]).startswith("refused: "):
            out.seen[path.name] = before
            continue
        try:
            with open_landing_file(path, spec.data.max_file_mb) as fh:
                sha = stream_sha256(fh)
        except LandingRefusedError as exc:  # swapped since it was checked: judged next tick
            out.refused.append(f"{shown(path.name)}: {exc.reason}")
            continue
        out.seen[path.name] = [stat.st_mtime_ns, stat.st_size, sha]
        if not before or before[2] != sha:
            out.changed.append((by_name[path.name], sha))
    return out


DATA_VERSION_TAG = "dagster/data_version"


def ingested_versions(
    instance: dg.DagsterInstance, key: dg.AssetKey, partitions: Iterable[str]
) -> dict[str, str]:
    """Data version of the latest materialization of each of ``partitions`` that has one."""
    out = {}
    for partition in partitions:
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=key, asset_partitions=[partition]), limit=1
        ).records
        mat = records[0].asset_materialization if records else None
        version = mat.tags.get(DATA_VERSION_TAG) if mat is not None and mat.tags else None
        if version:
            out[partition] = version
    return out


def not_ingested(
    instance: dg.DagsterInstance, key: dg.AssetKey, changed: list[tuple[str, str]]
) -> list[tuple[str, str]]:
    """The (partition, sha256) pairs whose bytes differ from what ``raw`` last ingested."""
    ingested = ingested_versions(instance, key, [k for k, _ in changed])
    return [(k, sha) for k, sha in changed if ingested.get(k) != sha]


def landing_sensor(spec: ProjectSpec) -> dg.SensorDefinition:
    p = spec.name
    targets = [dg.AssetKey([p, "raw"]), dg.AssetKey([p, "features"])]

    @dg.sensor(
        name=f"{p}__landing",
        target=dg.AssetSelection.assets(*targets),
        minimum_interval_seconds=spec.automation.sensor_interval_seconds,
        default_status=(
            dg.DefaultSensorStatus.RUNNING
            if spec.automation.enabled
            else dg.DefaultSensorStatus.STOPPED
        ),
        description=f"Launches raw + features for each new or changed file in {p}'s landing "
        "folder (run key = partition + content hash: identical bytes never run twice).",
    )
    def landing(context: dg.SensorEvaluationContext, store: ArtifactStore) -> dg.SensorResult:
        known = json.loads(context.cursor) if context.cursor else {}
        scan = scan_landing(spec, Path(store.home), known)
        changed = not_ingested(context.instance, targets[0], scan.changed)
        for name in scan.stray:
            context.log.warning(
                f"{p}: landing file '{shown(name)}' matches no partition key; ignored"
            )
        for refusal in scan.new_refusals:
            context.log.warning(f"{p}: landing file refused, no run launched: {refusal}")
        requests = [
            dg.RunRequest(
                run_key=f"{key}:{sha}",
                partition_key=key,
                # named, so the run records that it built features too: automation's
                # executed_with_root_target reads run.asset_selection, and a tick that saw raw
                # updated before features would otherwise request features again
                asset_selection=targets,
                tags={"mlplatform/landing_sha256": sha, "mlplatform/trigger": "landing"},
            )
            for key, sha in changed
        ]
        skip = None
        if not requests:
            skip = "no landing file differs from what raw last ingested"
            if scan.refused:
                skip += "; refused (never read): " + "; ".join(scan.refused)
            if scan.stray:
                skip += "; ignored files that match no partition key: " + ", ".join(
                    shown(n) for n in scan.stray
                )
        return dg.SensorResult(
            run_requests=requests, cursor=json.dumps(scan.seen), skip_reason=skip
        )

    return landing
