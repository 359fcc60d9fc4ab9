"""Scale benchmark: the platform's data step against the Arrow limit, and one training cutoff.

For each size (rows in one monthly partition of the example generator):

* platform: ``mlplatform materialize benchscale --assets data`` in a fresh home, timed from
  process start to exit (imports, Dagster, raw + features with their checks, Parquet; in a new
  home also the instance's databases, made once);
* in use: right after, the same step again with ``--force`` in that home, as every later
  partition runs (the instance's databases there, and its first run's);
* arrow: a bare process that reads the same CSV with ``pyarrow.csv.read_csv`` and writes it as
  Parquet (the limit of reading and writing that file);
* each ``--repeat`` times (default 3), alternating, each platform run in a fresh home: the
  best time of each side and the highest peak are reported (a single run swings by half: on
  this VM, memory freed a few seconds earlier goes back to the host, and touching it again
  costs about 8 ms per MiB, so whichever side runs on returned memory pays for it);
* with ``--warm``, also the same run as the daemon launches it on the embedded instance: on a
  warm run worker (``bench/run_worker.py`` (f): started and warmed by one untimed run of the
  same partition; timed from the launch request to the run's recorded end, so without the
  run's creation and its wait in the queue; best of ``--repeat`` runs). JSON ``warm_ratio`` =
  that / arrow at 1M rows.

Peak RSS is each process's own high-water mark (``VmHWM`` of ``/proc/self/status``, written
at exit). Then, unless ``--no-train``, a window of ``--window`` months of ``--train-rows`` rows
plus a holdout month is ingested and one cutoff is trained (``materialize --assets train``:
every example candidate, the evaluation and the bundle) with ``training.max_rows`` at
``--max-rows`` (default 1,000,000: sklearn candidates fit a seeded sample, the torch one
streams its sample in batches; 0 for none): wall time and peak RSS.

Prints a table, then (last stdout line) one JSON object: ``ratio`` = platform (new home) /
arrow seconds at 1M rows (or the largest size below it), ``ratio_in_use`` the same for the run
in a home in use, ``peak_rss_over_file`` = (platform peak - its process base) / file size at
the largest size, ``train_s`` and ``train_peak_mb``; with two sizes or more, each side's
seconds per million rows and fixed seconds (a least-squares line over the sizes:
``platform_per_million_s``, ``platform_fixed_s``, ``in_use_*``, ``arrow_*``) and
``marginal_ratio`` = platform / arrow seconds per further million rows.

Run: ``.venv/bin/python bench/scale.py`` (100k, 1M and 5M rows; 12 x 1M training rows),
``--sizes 100000 1000000 --no-train`` for a lighter run, ``--quick`` for a smoke run (2,000
and 5,000 rows).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from _common import compiled_package, emit, progress, spec_dict, table

from mlplatform.examples.generate import generate_example
from mlplatform.settings import EXAMPLES_DIR

PROJECT = "benchscale"
MB = 1 << 20
ROOT = Path(__file__).resolve().parents[1]

# Runs a command line in this process and writes the process's VmHWM (KiB) to $HWM_FILE at exit.
WITH_PEAK = """
import atexit, os, runpy, sys

def peak():
    with open("/proc/self/status") as fh:
        kib = next(l.split()[1] for l in fh if l.startswith("VmHWM:"))
    with open(os.environ["HWM_FILE"], "w") as out:
        out.write(kib)

atexit.register(peak)
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__") if sys.argv[0].endswith(".py") else (
    runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True))
"""
ARROW = """
import sys
import pyarrow.csv as csv
import pyarrow.parquet as pq
pq.write_table(csv.read_csv(sys.argv[1]), sys.argv[2])
"""
BASE = "import mlplatform.cli, mlplatform.steps.ingest, dagster"


def measured(args: list[str], env: dict[str, str], work: Path) -> tuple[float, float]:
    """Wall seconds from process start to exit and the process's peak RSS in MB."""
    hwm = work / "hwm"
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", WITH_PEAK, *args],
        env={**env, "HWM_FILE": str(hwm)},
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
    return seconds, int(hwm.read_text()) / 1024


def home(
    root: Path, name: str, window: int, max_rows: int | None = None
) -> tuple[dict[str, str], Path]:
    """A fresh MLPLATFORM_HOME with the bench spec; the environment and its landing folder."""
    base = root / name
    projects = base / "projects"
    projects.mkdir(parents=True)
    d = spec_dict_for(window)
    if max_rows is not None:
        training = d.setdefault("training", {})
        assert isinstance(training, dict)
        training["max_rows"] = max_rows
    (projects / f"{PROJECT}.yaml").write_text(yaml.safe_dump(d, sort_keys=False), "utf-8")
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "MLPLATFORM_HOME": str(base / "home"),
        "MLPLATFORM_PROJECTS_DIR": str(projects),
    }
    return env, base / "home" / "landing" / PROJECT


def spec_dict_for(window: int) -> dict[str, object]:
    from _common import Size

    d = spec_dict(Size(months=window + 1, rows=0, window=window))
    d["name"] = PROJECT
    d["data"]["landing"] = "{home}/landing/" + PROJECT
    d["data"]["max_file_mb"] = 4096
    example = yaml.safe_load((EXAMPLES_DIR / "churn.yaml").read_text(encoding="utf-8"))
    d["candidates"] = example["candidates"]  # every example candidate
    d["quality"]["min_rows"] = 10
    return d


def again(env: dict[str, str], root: Path, landed: Path, name: str) -> dict[str, str]:
    """Another fresh home with the same landing file (a hard link) and the same spec."""
    base = root / name
    landing = base / "home" / "landing" / PROJECT
    landing.mkdir(parents=True)
    os.link(landed, landing / landed.name)
    return {**env, "MLPLATFORM_HOME": str(base / "home")}


def data_step(root: Path, rows: int, warm: bool, repeat: int) -> dict[str, float]:
    env, landing = home(root, f"data-{rows}", window=1)
    (path,) = generate_example(landing, months=1, rows_per_month=rows)
    size = path.stat().st_size
    cli = ["mlplatform.cli", "materialize", PROJECT, "--assets", "data"]
    platform, used, arrow = [], [], []
    for i in range(repeat):  # alternating: a machine that slows down slows both sides
        progress(f"  {rows:,} rows: {size / MB:.0f} MB; platform data step, run {i + 1} ...")
        run_env = env if i == 0 else again(env, root, path, f"data-{rows}-{i}")
        platform.append(measured(cli, run_env, root))
        progress(f"  {rows:,} rows: the same step again in that home, now in use ...")
        used.append(measured([*cli, "--force"], run_env, root))
        progress(f"  {rows:,} rows: arrow read + write, run {i + 1} ...")
        arrow.append(measured_script(ARROW, [str(path), str(root / "arrow.parquet")], env, root))
    base_mb = process_base(env, root)
    platform_s, platform_mb = min(s for s, _ in platform), max(mb for _, mb in platform + used)
    arrow_s, arrow_mb = min(s for s, _ in arrow), max(mb for _, mb in arrow)
    found = {
        "rows": rows,
        "file_mb": size / MB,
        "platform_s": platform_s,
        "used_s": min(s for s, _ in used),
        "platform_mb": platform_mb,
        "base_mb": base_mb,
        "arrow_s": arrow_s,
        "arrow_mb": arrow_mb,
    }
    if warm:
        progress(f"  {rows:,} rows: the same run on a warm run worker ...")
        found["warm_s"] = warm_step(env, path.stem, repeat)
    return found


def warm_step(env: dict[str, str], key: str, repeat: int) -> float:
    """The partition's raw + features run as the daemon launches it on the embedded instance:
    on a warm run worker (started and warmed by one untimed run of the same partition), timed
    as ``run_worker.py``'s (f) from the launch request to the run's recorded end; the best of
    ``repeat`` runs, as for the other sides."""
    from run_worker import warm_run

    from mlplatform.defs.build import build_defs, data_job_name
    from mlplatform.defs.fork_launcher import ForkRunLauncher
    from mlplatform.defs.runs import instance_for
    from mlplatform.settings import load_settings

    before = dict(os.environ)
    os.environ.update(env)  # the warm server is started from this process
    try:
        settings = load_settings()
        instance = instance_for(settings)
        if not isinstance(instance.run_launcher, ForkRunLauncher):
            raise SystemExit("the warm run needs the embedded instance's warm run launcher")
        job = build_defs(settings).resolve_job_def(data_job_name(PROJECT))
        warm_run(instance, job, key)  # starts and warms the server
        seconds = min(warm_run(instance, job, key) for _ in range(repeat))
        instance.dispose()  # stops the warm server
        return seconds
    finally:
        os.environ.clear()
        os.environ.update(before)


def measured_script(
    code: str, args: list[str], env: dict[str, str], work: Path
) -> tuple[float, float]:
    script = work / "script.py"
    script.write_text(code, encoding="utf-8")
    return measured([str(script), *args], env, work)


def process_base(env: dict[str, str], work: Path) -> float:
    """Peak RSS of a process that only imports what the data step imports (its base)."""
    return measured_script(BASE, [], env, work)[1]


def train_step(root: Path, rows: int, window: int, max_rows: int | None) -> dict[str, float]:
    env, landing = home(root, "train", window=window, max_rows=max_rows)
    progress(f"  training: generating {window + 1} x {rows:,} rows ...")
    generate_example(landing, months=window + 1, rows_per_month=rows)
    data_s, _ = measured(["mlplatform.cli", "materialize", PROJECT, "--assets", "data"], env, root)
    progress(f"  training: data {data_s:.0f}s; one cutoff ...")
    train = ["mlplatform.cli", "materialize", PROJECT, "--assets", "train"]
    train_s, train_mb = measured(train, env, root)
    return {
        "train_rows": rows * window,
        "max_rows": max_rows or 0,
        "train_s": train_s,
        "train_peak_mb": train_mb,
    }


def row(r: dict[str, float]) -> list[object]:
    """One table row of a size's results."""
    ratio = round(r["platform_s"] / r["arrow_s"], 1)
    in_use = round(r["used_s"] / r["arrow_s"], 1)
    over = round((r["platform_mb"] - r["base_mb"]) / r["file_mb"], 2)
    return [
        r["rows"], r["file_mb"], r["platform_s"], r["used_s"], r["arrow_s"], ratio, in_use,
        r["platform_mb"], r["base_mb"], r["arrow_mb"], over,
    ]  # fmt: skip


def line_fit(points: list[tuple[float, float]]) -> tuple[float, float]:
    """Least-squares line through ``(x, y)`` points (at least two distinct x): slope, intercept."""
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    slope = sum((x - mx) * (y - my) for x, y in points) / sxx
    return slope, my - slope * mx


def per_million(results: list[dict[str, float]]) -> dict[str, float | None]:
    """Seconds per million rows (the slope over the sizes) and the fixed part (the
    intercept) of each side, and the ratio of the slopes: what each further million rows
    costs, apart from what every run pays. Empty with fewer than two sizes; the ratio is None
    where Arrow's slope is not above 0 (noise outweighing sizes too close together)."""
    if len({r["rows"] for r in results}) < 2:
        return {}
    found: dict[str, float | None] = {}
    slopes = {}
    for side, key in (("platform", "platform_s"), ("in_use", "used_s"), ("arrow", "arrow_s")):
        slopes[side], fixed = line_fit([(r["rows"] / 1e6, r[key]) for r in results])
        found[f"{side}_per_million_s"] = round(slopes[side], 3)
        found[f"{side}_fixed_s"] = round(fixed, 3)
    arrow = slopes["arrow"]
    found["marginal_ratio"] = round(slopes["platform"] / arrow, 2) if arrow > 0 else None
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000, 5_000_000])
    parser.add_argument("--train-rows", type=int, default=1_000_000)
    parser.add_argument("--window", type=int, default=12)
    parser.add_argument(
        "--max-rows",
        type=int,
        default=1_000_000,
        help="training.max_rows of the training run (0: none, every candidate fits the "
        "whole window)",
    )
    parser.add_argument(
        "--warm",
        action="store_true",
        help="also time each size's run on a warm run worker (the daemon's path)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="alternating runs of the data step and of Arrow per size: the best time of each "
        "and the highest peak are reported (default 3)",
    )
    parser.add_argument("--no-train", action="store_true")
    parser.add_argument(
        "--quick", action="store_true", help="smoke sizes: 2,000 and 5,000 rows, 2 x 2,000"
    )
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.train_rows, args.window, args.repeat = [2_000, 5_000], 2_000, 2, 1
    compiled_package()
    with tempfile.TemporaryDirectory(prefix="mlplatform-scale-") as tmp:
        root = Path(tmp)
        results = [data_step(root, rows, args.warm, args.repeat) for rows in args.sizes]
        max_rows = args.max_rows or None
        trained = (
            None if args.no_train else train_step(root, args.train_rows, args.window, max_rows)
        )
    headers = ["rows", "file MB", "new home s", "in use s", "arrow s", "ratio", "in use ratio"]
    headers += ["platform MB", "base MB", "arrow MB", "(peak-base)/file"]
    rows = [row(r) for r in results]
    print(table(headers, rows))
    if args.warm:
        for r in results:
            print(f"{r['rows']:,} rows on a warm run worker: {r['warm_s']:.1f} s, "
                  f"{r['warm_s'] / r['arrow_s']:.1f}x arrow")  # fmt: skip
    marginal = per_million(results)
    if marginal:
        print(
            f"per million rows: new home {marginal['platform_per_million_s']:.2f} s "
            f"(+ {marginal['platform_fixed_s']:.1f} s every run), in use "
            f"{marginal['in_use_per_million_s']:.2f} s (+ {marginal['in_use_fixed_s']:.1f} s), "
            f"arrow {marginal['arrow_per_million_s']:.2f} s (+ {marginal['arrow_fixed_s']:.1f} s): "
            f"{marginal['marginal_ratio'] or 'n/a'}x arrow per further million"
        )
    at = [r for r in results if r["rows"] <= 1_000_000] or results
    ratio_row = max(at, key=lambda r: r["rows"])
    largest = max(results, key=lambda r: r["rows"])
    result: dict[str, object] = {
        "bench": "scale",
        "ratio": round(ratio_row["platform_s"] / ratio_row["arrow_s"], 2),
        "ratio_rows": ratio_row["rows"],
        "ratio_in_use": round(ratio_row["used_s"] / ratio_row["arrow_s"], 2),
        "peak_rss_over_file": round(
            (largest["platform_mb"] - largest["base_mb"]) / largest["file_mb"], 2
        ),
        "peak_rows": largest["rows"],
        "repeat": args.repeat,
        **(
            {"warm_ratio": round(ratio_row["warm_s"] / ratio_row["arrow_s"], 2)}
            if args.warm
            else {}
        ),
        **marginal,
        "sizes": json.loads(json.dumps(results)),
    }
    if trained is not None:
        sample = f" (max_rows {trained['max_rows']:,})" if trained["max_rows"] else ""
        print(f"training one cutoff on {trained['train_rows']:,} rows{sample}: "
              f"{trained['train_s']:.0f} s, peak {trained['train_peak_mb']:.0f} MB")  # fmt: skip
        result.update(trained)
    emit(result)


if __name__ == "__main__":
    main()
