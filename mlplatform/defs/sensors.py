"""Landing sensor: a new or changed landing file launches a run for exactly its partition.

"Changed" is decided against the instance, not only the sensor's cursor: a file whose sha256
equals the data version of the latest ``raw`` materialization of its partition was already
ingested (by the CLI, a backfill or an earlier daemon) and launches nothing.
"""

import json
from collections.abc import Iterable
from pathlib import Path

import dagster as dg

from mlplatform.defs.partitions import data_partitions
from mlplatform.digests import file_sha256
from mlplatform.resources.store import ArtifactStore
from mlplatform.spec import ProjectSpec


def scan_landing(
    spec: ProjectSpec, home: Path, known: dict[str, list]
) -> tuple[dict[str, list], list[tuple[str, str]], list[str]]:
    """Files of the landing folder as {name: [mtime_ns, size, sha256]} (hashing only files
    whose size or mtime changed), new or changed (partition, sha256), and stray file names."""
    keys = set(data_partitions(spec).get_partition_keys())
    by_name = {spec.data.filename.format(partition=k): k for k in keys}
    landing = spec.landing_dir(home)
    seen: dict[str, list] = {}
    changed: list[tuple[str, str]] = []
    stray: list[str] = []
    if not landing.is_dir():
        return seen, changed, stray
    for path in sorted(landing.iterdir()):
        if not path.is_file() or path.name.startswith("."):
            continue
        if path.name not in by_name:
            stray.append(path.name)
            continue
        stat = path.stat()
        before = known.get(path.name)
        if before and before[0] == stat.st_mtime_ns and before[1] == stat.st_size:
            seen[path.name] = before
            continue
        sha = file_sha256(path)
        seen[path.name] = [stat.st_mtime_ns, stat.st_size, sha]
        if not before or before[2] != sha:
            changed.append((by_name[path.name], sha))
    return seen, changed, stray


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
        seen, changed, stray = scan_landing(spec, Path(store.home), known)
        changed = not_ingested(context.instance, targets[0], changed)
        for name in stray:
            context.log.warning(f"{p}: landing file {name!r} matches no partition key; ignored")
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
            skip = "no landing file differs from what raw last ingested" + (
                f"; ignored files that match no partition key: {', '.join(stray)}" if stray else ""
            )
        return dg.SensorResult(run_requests=requests, cursor=json.dumps(seen), skip_reason=skip)

    return landing
