"""Run-worker benchmark: what a fresh process pays to define the assets and to run one partition.

Every Dagster run worker and code server starts by importing ``mlplatform.definitions``; a run
of ``raw`` + ``features`` then needs only pandas and pyarrow on top. Measured in the same run,
each the median of N fresh processes (default 5, ``--quick`` 2; ``--repeat``), interleaved
round by round after one untimed warm-up each, wall time from process start to exit and peak
RSS from ``os.wait4``:

* (a) ``import mlplatform.definitions`` vs (b) ``import dagster`` (the floor);
* (c) a raw + features run of one partition as a run worker does it: import the code location
  (``mlplatform.definitions``), open the instance, execute the data job for that partition
  (drift check included, against the previous ``training.window`` partitions, ingested
  untimed beforehand) vs (d) the bare step functions on the same partition in a fresh process
  (``read_landing_file`` -> ``parse_partition`` -> ``build_features``, raw and features
  written as Parquet with pyarrow; no Dagster, no checks);
* (e) for reference (not in a ratio) the same run through the CLI, ``mlplatform materialize
  benchchurn --assets data --from K --to K --force`` (its Typer app called in a fresh
  interpreter, so the heavy modules it ends with can be listed as for the others);
* (f) the same run launched through the warm run workers (:mod:`mlplatform.defs.fork_launcher`,
  the embedded default): the warm server is started and warmed (one untimed run) before
  timing, as a running ``mlplatform ui`` has it; timed from the launch request
  (``instance.launch_run``, as the daemon calls it once the queue lets a run go) to the run's
  end time as recorded by the instance. Included: the launch event, the hand-over to the
  server (its check that its definitions are the run's), the fork, opening the instance in the
  child and executing the run with all its event writes. Not included: the run's creation,
  its wait in the queue (the daemon dequeues every 2 s), the child's exit after the run ended.
  Its RSS is not measured (a forked child shares the server's pages). One per round, in the
  bench process, after the fresh processes of that round.

Prints a table, then (last stdout line) ``{"bench": "run_worker", "definitions_s",
"dagster_s", "import_ratio", "definitions_mb", "dagster_mb", "rss_ratio", "run_s", "bare_s",
"run_ratio", "run_mb", "bare_mb", "cli_s", "warm_run_s", "warm_run_ratio"}`` with import_ratio
= definitions_s / dagster_s, rss_ratio = definitions_mb / dagster_mb, run_ratio = run_s /
bare_s, warm_run_ratio = warm_run_s / bare_s. Run: ``.venv/bin/python bench/run_worker.py
[--quick] [--keep DIR] [--repeat N]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
from _common import (
    FULL,
    QUICK,
    Size,
    emit,
    generate,
    land,
    make_home,
    progress,
    quiet,
    table,
    work_dir,
)

from mlplatform.defs.build import build_defs, data_job_name
from mlplatform.defs.fork_launcher import WARM_TAG, ForkRunLauncher
from mlplatform.defs.runs import QUIET, instance_for, run_partitions
from mlplatform.settings import Settings
from mlplatform.spec import ProjectSpec

HEAVY = (
    "sklearn",
    "torch",
    "mlflow",
    "onnx",
    "onnxruntime",
    "skl2onnx",
    "optuna",
    "matplotlib",
    "scipy",
    "skops",
    "safetensors",
)
# Appended to a child's code: the heavy libraries it ended up with, as its last stdout line.
REPORT_HEAVY = (
    "\nimport json as _json, sys as _sys\n"
    f"print(_json.dumps([m for m in {HEAVY!r} if m in _sys.modules]))\n"
)

RUN = """
import sys
from mlplatform.definitions import defs  # what a run worker loads: the code location
from mlplatform.defs.build import data_job_name
from mlplatform.defs.runs import QUIET, instance_for, run_partitions
from mlplatform.settings import load_settings

with instance_for(load_settings()) as instance:
    [outcome] = run_partitions(defs, instance, data_job_name({project!r}), [{key!r}])
if not outcome.success:
    sys.exit(f"run failed: {{outcome.error}}")
"""

BARE = """
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from mlplatform.spec import load_spec
from mlplatform.steps import ingest
from mlplatform.steps.features import build_features

spec = load_spec(Path({spec_file!r}))
path = Path({landing!r})
typed, quality = ingest.parse_partition(ingest.read_landing_file(path, spec), spec, path)
if quality.problems and any(quality.problems.values()):
    raise SystemExit(f"bad partition: {{quality.problems}}")
frame = build_features(typed, spec)
out = Path({out!r})
out.mkdir(parents=True, exist_ok=True)
pq.write_table(pa.Table.from_pandas(typed, preserve_index=False), out / "raw.parquet")
pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), out / "features.parquet")
"""

# Starts one probe and waits for it with os.wait4: wall time from start to exit and the probe's
# peak RSS. A child's ru_maxrss starts from the RSS of the process it was forked from, so the
# probes are started from this small interpreter, never from the bench process itself.
LAUNCH = """
import json, os, subprocess, sys, time

with open(sys.argv[1], "w") as out:
    started = time.perf_counter()
    child = subprocess.Popen(sys.argv[2:], stdout=out, stderr=subprocess.STDOUT)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - started
rc = os.waitstatus_to_exitcode(status)
print(json.dumps({"wall_s": wall, "maxrss_kb": usage.ru_maxrss, "rc": rc}))
"""

# The CLI in-process, so the heavy libraries it ends with can be reported as for the others.
CLI = """
import sys
from mlplatform.cli import app

sys.argv = ["mlplatform", "materialize", {project!r}, "--assets", "data", "--from", {key!r},
            "--to", {key!r}, "--force"]
try:
    app()
except SystemExit as exc:
    if exc.code:
        raise
"""


@dataclass
class Probe:
    """One kind of fresh process, measured ``repeat`` times."""

    label: str
    argv: list[str]
    wall_s: list[float] = field(default_factory=list)
    peak_mb: list[float] = field(default_factory=list)
    heavy: list[str] | None = None

    @property
    def wall(self) -> float:
        return statistics.median(self.wall_s)

    @property
    def peak(self) -> float:
        return statistics.median(self.peak_mb)


def measure(probe: Probe, env: dict[str, str], log: Path, record: bool = True) -> None:
    """Run the probe once through a small launcher process (see LAUNCH) and record its wall
    time and peak RSS."""
    launched = subprocess.run(
        [sys.executable, "-c", LAUNCH, str(log), *probe.argv],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(launched.stdout)
    if result["rc"] != 0:
        tail = log.read_text(errors="replace")[-3000:]
        raise SystemExit(f"{probe.label}: exit {result['rc']}\n{tail}")
    if not record:
        return
    probe.wall_s.append(result["wall_s"])
    probe.peak_mb.append(result["maxrss_kb"] / 1024)  # Linux: kilobytes
    lines = log.read_text(errors="replace").strip().splitlines()
    if lines and lines[-1].startswith("["):
        probe.heavy = json.loads(lines[-1])


def code_origin(job_name: str) -> object:
    """The code origin of a job of ``mlplatform.definitions``, as a code server records it."""
    from dagster._core.definitions.reconstruct import ReconstructableRepository

    repo = ReconstructableRepository.for_module(
        "mlplatform.definitions", "defs", working_directory=os.getcwd()
    )
    return repo.get_reconstructable_job(job_name).get_python_origin()


def warm_run(instance: dg.DagsterInstance, job: dg.JobDefinition, key: str) -> float:
    """(f): one run of ``job`` for ``key`` launched through the warm run workers; seconds from
    the launch request to the run's end as the instance recorded it."""
    run = instance.create_run_for_job(
        job_def=job,
        job_code_origin=code_origin(job.name),  # type: ignore[arg-type]
        tags={"dagster/partition": key},
        run_config=QUIET,  # as (c): run_partitions' default
        status=dg.DagsterRunStatus.NOT_STARTED,
    )
    started = time.time()
    instance.launch_run(run.run_id, workspace=None)  # type: ignore[arg-type]
    while True:
        record = instance.get_run_record_by_id(run.run_id)
        if record is not None and record.dagster_run.is_finished:
            break
        time.sleep(0.01)
    if record.dagster_run.status != dg.DagsterRunStatus.SUCCESS:
        raise SystemExit(f"(f) warm run {run.run_id}: {record.dagster_run.status.value}")
    if record.dagster_run.tags.get(WARM_TAG) != "warm":
        raise SystemExit(f"(f) run {run.run_id} was not executed by a warm run worker")
    assert record.end_time is not None
    return record.end_time - started


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="smoke size: 500 rows, window 3, 2 repeats"
    )
    parser.add_argument("--keep", type=Path, default=None, help="keep the work dir here")
    parser.add_argument("--repeat", type=int, default=None, help="processes per kind (5)")
    return parser.parse_args()


def setup(root: Path, size: Size) -> tuple[Settings, ProjectSpec, Path]:
    """A home with ``window + 1`` landed months; the first ``window`` ingested (untimed), so
    the measured partition's drift check has its reference. Returns the last landing file."""
    settings, spec = make_home(root, "platform", size)
    months = size.window + 1
    progress(f"generating {months} months x {size.rows:,} rows in {root}")
    files = land(generate(spec, root / "generated", months, size.rows), spec, settings)
    progress(f"ingesting the {size.window} months before {files[-1].stem} (untimed) ...")
    defs = build_defs(settings, [spec])
    with instance_for(settings) as instance:
        outcomes = run_partitions(
            defs, instance, data_job_name(spec.name), [f.stem for f in files[:-1]]
        )
    failed = [f"{o.partition}: {o.error}" for o in outcomes if not o.success]
    if failed:
        raise SystemExit("ingest failed:\n" + "\n".join(failed))
    return settings, spec, files[-1]


def main() -> None:
    args = parse_args()
    quiet()
    size: Size = QUICK if args.quick else FULL
    repeat = args.repeat or (2 if args.quick else 5)
    python = sys.executable
    with work_dir(args.keep) as root:
        settings, spec, landing = setup(root, size)
        key = landing.stem
        spec_file = settings.projects_dir / f"{spec.name}.yaml"
        env = {
            **os.environ,
            "MLPLATFORM_HOME": str(settings.home),
            "MLPLATFORM_PROJECTS_DIR": str(settings.projects_dir),
            "DAGSTER_HOME": str(settings.dagster_home),
        }
        run_code = RUN.format(project=spec.name, key=key)
        cli_code = CLI.format(project=spec.name, key=key)
        bare_code = BARE.format(
            spec_file=str(spec_file), landing=str(landing), out=str(root / "bare" / key)
        )
        probes = [
            Probe(
                "(a) import mlplatform.definitions",
                [python, "-c", "import mlplatform.definitions" + REPORT_HEAVY],
            ),
            Probe("(b) import dagster", [python, "-c", "import dagster" + REPORT_HEAVY]),
            Probe(f"(c) raw + features run, {key}", [python, "-c", run_code + REPORT_HEAVY]),
            Probe(f"(d) bare steps, {key}", [python, "-c", bare_code + REPORT_HEAVY]),
            Probe("(e) mlplatform materialize (CLI)", [python, "-c", cli_code + REPORT_HEAVY]),
        ]
        logs = root / "logs"
        logs.mkdir()
        os.environ.update(env)  # the warm server (f) is started from this process
        instance = dg.DagsterInstance.get()
        if not isinstance(instance.run_launcher, ForkRunLauncher):
            raise SystemExit("(f) needs the embedded instance's warm run launcher")
        job = build_defs(settings).resolve_job_def(data_job_name(spec.name))
        warm = Probe(f"(f) warm worker run, {key}", [])
        progress(f"warm-up: one untimed process (and warm run) of each kind, then {repeat} rounds")
        for i, probe in enumerate(probes):
            measure(probe, env, logs / f"warmup-{i}.log", record=False)
        warm_run(instance, job, key)
        for r in range(repeat):
            for i, probe in enumerate(probes):
                measure(probe, env, logs / f"{r}-{i}.log")
            warm.wall_s.append(warm_run(instance, job, key))
            progress(
                f"  round {r + 1}/{repeat}: "
                + ", ".join(f"{p.label[:3]} {p.wall_s[-1]:.2f}s" for p in [*probes, warm])
            )
        instance.dispose()  # stops the warm server

    defs_p, dagster_p, run_p, bare_p, cli_p = probes
    import_ratio = round(defs_p.wall / dagster_p.wall, 3)
    rss_ratio = round(defs_p.peak / dagster_p.peak, 3)
    run_ratio = round(run_p.wall / bare_p.wall, 3)
    warm_ratio = round(warm.wall / bare_p.wall, 3)
    print(
        f"run-worker benchmark: {spec.name}, medians of {repeat} fresh processes each; "
        f"partition {key} ({size.rows:,} rows), drift reference {size.window} partitions"
    )
    print()
    print(
        table(
            ["process", "wall ms", "min ms", "max ms", "peak MB", "heavy modules"],
            [
                [
                    p.label,
                    round(p.wall * 1000),
                    round(min(p.wall_s) * 1000),
                    round(max(p.wall_s) * 1000),
                    p.peak if p.peak_mb else "-",
                    "-" if p.heavy is None else ", ".join(p.heavy) or "none",
                ]
                for p in [*probes, warm]
            ],
        )
    )
    print()
    print(f"definitions / dagster: wall {import_ratio:.2f}x (goal <= 1.5), ", end="")
    print(f"peak {rss_ratio:.2f}x, {defs_p.peak:.1f} MB (goal <= 150 MB)")
    print(f"run / bare: wall {run_ratio:.2f}x (goal <= 2)")
    print(f"warm worker run / bare: wall {warm_ratio:.2f}x (goal <= 2)")
    emit(
        {
            "bench": "run_worker",
            "definitions_s": round(defs_p.wall, 3),
            "dagster_s": round(dagster_p.wall, 3),
            "import_ratio": import_ratio,
            "definitions_mb": round(defs_p.peak, 1),
            "dagster_mb": round(dagster_p.peak, 1),
            "rss_ratio": rss_ratio,
            "run_s": round(run_p.wall, 3),
            "bare_s": round(bare_p.wall, 3),
            "run_ratio": run_ratio,
            "run_mb": round(run_p.peak, 1),
            "bare_mb": round(bare_p.peak, 1),
            "cli_s": round(cli_p.wall, 3),
            "warm_run_s": round(warm.wall, 3),
            "warm_run_ratio": warm_ratio,
        }
    )


if __name__ == "__main__":
    sys.exit(main())
