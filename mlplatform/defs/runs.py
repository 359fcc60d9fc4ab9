"""Run the project jobs in-process against the platform's Dagster instance, with progress."""

import os
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg

from mlplatform.defs.build import data_job_name, train_job_name, train_targets
from mlplatform.defs.orphaned_runs import PID_TAG
from mlplatform.defs.partitions import (  # noqa: F401 (landed_partitions: used by the CLI)
    landed_partitions,
    previous_window,
    trainable_cutoffs,
)
from mlplatform.defs.status import check_failures, error_text, project_status
from mlplatform.free_memory import resume_collection
from mlplatform.identity import os_user
from mlplatform.settings import Settings
from mlplatform.spec import ProjectSpec

EMBEDDED_YAML = Path(__file__).parents[1] / "deploy" / "embedded.yaml"
MANAGED_MARK = "# mlplatform embedded instance (managed"
LEGACY_YAML = """\
# Embedded default: run, event and schedule storage on SQLite under DAGSTER_HOME.
telemetry:
  enabled: false
"""
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
# the CLI without -v: a failure is reported once, by us, without Dagster's stack trace
SILENT = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


def ensure_dagster_home(settings: Settings) -> Path:
    """Create DAGSTER_HOME under the platform home (with a dagster.yaml) and export it."""
    home = settings.dagster_home
    home.mkdir(parents=True, exist_ok=True)
    write_instance_yaml(home / "dagster.yaml")
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def write_instance_yaml(path: Path) -> None:
    """Write the embedded instance configuration when ``path`` is missing or holds an earlier
    version of it; a file of the user's own (or the team stack's) is left as it is."""
    wanted = EMBEDDED_YAML.read_text(encoding="utf-8")
    if path.exists():
        current = path.read_text(encoding="utf-8")
        if current == wanted or not (current.startswith(MANAGED_MARK) or current == LEGACY_YAML):
            return
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(wanted, encoding="utf-8")
    os.replace(tmp, path)


def instance_for(settings: Settings) -> dg.DagsterInstance:
    ensure_dagster_home(settings)
    return dg.DagsterInstance.get()


@dataclass
class RunOutcome:
    job: str
    partition: str
    success: bool
    seconds: float
    error: str = ""


def _failure_text(result: dg.ExecuteInProcessResult) -> str:
    lines = []
    for event in result.all_events:
        if event.event_type_value == "STEP_FAILURE":
            err = event.event_specific_data.error  # type: ignore[union-attr]
            lines.append(f"{event.step_key}: {error_text(err, event.message or '')}")
    return "\n".join(lines) or "run failed"


def run_partitions(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    job_name: str,
    keys: list[str],
    progress: Callable[[int, int, RunOutcome], None] | None = None,
    user: str | None = None,
    selections: Mapping[str, Sequence[dg.AssetKey]] | None = None,
    run_config: Mapping[str, object] = QUIET,
) -> list[RunOutcome]:
    """One run of ``job_name`` per partition key, tagged with the user who asked (the trainer
    of any model it builds); failures are collected, not raised. ``selections`` narrows the
    assets of a key's run (default: all of the job's)."""
    resume_collection()  # paused for the command line's start-up: the work begins
    job = defs.resolve_job_def(job_name)
    outcomes = []
    everything = sorted(job.asset_layer.selected_asset_keys)
    for i, key in enumerate(keys, 1):
        started = time.perf_counter()
        assets = sorted((selections or {}).get(key, everything))
        result = job.execute_in_process(
            partition_key=key,
            # named, so a running daemon's automation sees that this run built all of them
            # (executed_with_root_target reads run.asset_selection) and requests none again
            asset_selection=assets,
            instance=instance,
            run_config=dict(run_config),
            raise_on_error=False,
            # the pid: a run this process leaves STARTED when killed is found and ended later
            tags={"mlplatform/user": user or os_user(), PID_TAG: str(os.getpid())},
        )
        outcome = RunOutcome(
            job_name,
            key,
            result.success,
            time.perf_counter() - started,
            "" if result.success else _failure_text(result),
        )
        outcomes.append(outcome)
        if progress:
            progress(i, len(keys), outcome)
    return outcomes


def materialize_project(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    spec: ProjectSpec,
    data_keys: list[str],
    cutoffs: list[str],
    progress: Callable[[int, int, RunOutcome], None] | None = None,
) -> list[RunOutcome]:
    """Ingest the data partitions, then train, evaluate and bundle each cutoff."""
    outcomes = run_partitions(defs, instance, data_job_name(spec.name), data_keys, progress)
    outcomes += run_partitions(defs, instance, train_job_name(spec.name), cutoffs, progress)
    return outcomes


def stale_data_keys(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    spec: ProjectSpec,
    keys: list[str],
    home: Path,
) -> list[str]:
    """The data partitions among ``keys`` whose raw or features is missing, stale (a changed
    landing file, new code) or failed a blocking check: what a data run would change."""
    rows = project_status(defs, instance, spec, keys, home, cutoffs=[])
    data = {f"{spec.name}/raw", f"{spec.name}/features"}  # not predictions: a data run skips it
    todo = {
        r.partition
        for r in rows
        if r.asset in data and r.state in ("missing", "stale", "failed_check")
    }
    return [k for k in keys if k in todo]


@dataclass(frozen=True)
class CutoffPlan:
    """What ``materialize`` does for one cutoff: run ``assets``, or nothing and why."""

    cutoff: str
    assets: tuple[dg.AssetKey, ...] = ()
    refused: str = ""  # one line: why this cutoff cannot be trained now
    note: str = ""  # why nothing runs although it is not refused
    blocked: list[str] = field(default_factory=list)


def reads_of(spec: ProjectSpec, cutoff: str) -> list[str]:
    """The data partitions a cutoff reads: its training window and its holdout."""
    return [*previous_window(spec, cutoff), cutoff]


def blocked_plan(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    spec: ProjectSpec,
    cutoff: str,
    reads: list[str],
) -> CutoffPlan | None:
    """The refusal of a cutoff that reads a partition whose latest blocking check failed."""
    p = spec.name
    graph = defs.resolve_asset_graph()
    blocked = []
    for kind in ("raw", "features"):
        key = dg.AssetKey([p, kind])
        names = [c.name for c in graph.get(key).check_keys]
        for k in reads:
            blocked += [
                f"{f.asset}[{k}] failed {f}"
                for f in check_failures(instance, key, names, k)
                if f.blocking
            ]
    if blocked:
        return CutoffPlan(
            cutoff,
            refused=f"cutoff {cutoff} not trained: it reads a partition that failed a blocking "
            f"check: {blocked[0]}"
            + (f" (and {len(blocked) - 1} more)" if len(blocked) > 1 else "")
            + "; fix the landing file and run materialize again",
            blocked=blocked,
        )
    return None


def unbuilt_plan(
    instance: dg.DagsterInstance,
    spec: ProjectSpec,
    cutoff: str,
    reads: list[str],
    landed: Collection[str] | None,
) -> CutoffPlan | None:
    """The refusal of a cutoff that reads a features partition not materialized (yet)."""
    p = spec.name
    built = instance.get_materialized_partitions(dg.AssetKey([p, "features"]))
    missing = [k for k in reads if k not in built]
    if missing:
        absent = [k for k in missing if landed is not None and k not in landed]
        unbuilt = [k for k in missing if k not in absent]
        why = []
        if absent:
            why.append(f"no landing file for {', '.join(absent)}")
        if unbuilt:
            why.append(f"{', '.join(unbuilt)} landed but not built (materialize --assets all)")
        return CutoffPlan(
            cutoff,
            refused=f"cutoff {cutoff} not trained: {p}/features is not materialized for "
            f"{len(missing)} of the {len(reads)} partitions it reads (window {reads[0]} .. "
            f"{reads[-2]}, holdout {cutoff}): " + "; ".join(why),
        )
    return None


def plan_cutoff(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    spec: ProjectSpec,
    cutoff: str,
    home: Path,
    force: bool = False,
    landed: Collection[str] | None = None,
) -> CutoffPlan:
    """Refuse a cutoff any of whose partitions has a failed latest blocking check (raw or
    features) or is not materialized; otherwise the train assets that are missing or stale
    (all of them with ``force``), each stage bringing the ones after it along."""
    p = spec.name
    reads = reads_of(spec, cutoff)
    refused = blocked_plan(defs, instance, spec, cutoff, reads) or unbuilt_plan(
        instance, spec, cutoff, reads, landed
    )
    if refused is not None:
        return refused
    targets = train_targets(spec)
    if force:
        return CutoffPlan(cutoff, tuple(targets))
    rows = {
        r.asset: r
        for r in project_status(defs, instance, spec, reads, home, cutoffs=[cutoff])
        if r.partition == cutoff
    }
    models = [k for k in targets if k.path[1] == "model"]
    evaluation, bundle = dg.AssetKey([p, "evaluation"]), dg.AssetKey([p, "bundle"])

    def needed(key: dg.AssetKey) -> bool:
        row = rows.get(key.to_user_string())
        return row is None or row.state == "missing" or row.stale

    def failed(key: dg.AssetKey) -> str:
        row = rows.get(key.to_user_string())
        return row.reason if row and row.state == "failed_check" else ""

    todo = [k for k in models if needed(k)]
    if todo:
        return CutoffPlan(cutoff, (*todo, evaluation, bundle))
    if needed(evaluation):
        return CutoffPlan(cutoff, (evaluation, bundle))
    for key in (evaluation, bundle):
        if failed(key):
            return CutoffPlan(
                cutoff,
                refused=f"cutoff {cutoff}: {key.to_user_string()} failed ({failed(key)}) and "
                "nothing changed since; --force retrains",
            )
    if needed(bundle):
        return CutoffPlan(cutoff, (bundle,))
    return CutoffPlan(cutoff, note="up to date")


def latest_bundle(instance: dg.DagsterInstance, spec: ProjectSpec, cutoff: str) -> str | None:
    """The path of the bundle published for a cutoff since its latest evaluation, if any."""

    def latest(kind: str) -> dg.EventLogRecord | None:
        records = instance.get_event_records(
            dg.EventRecordsFilter(
                event_type=dg.DagsterEventType.ASSET_MATERIALIZATION,
                asset_key=dg.AssetKey([spec.name, kind]),
                asset_partitions=[cutoff],
            ),
            limit=1,
        )
        return records[0] if records else None

    bundle, evaluation = latest("bundle"), latest("evaluation")
    if bundle is None or bundle.asset_materialization is None:
        return None
    if evaluation is not None and evaluation.storage_id > bundle.storage_id:
        return None
    path = bundle.asset_materialization.metadata.get("path")
    return str(path.value) if path is not None else None
