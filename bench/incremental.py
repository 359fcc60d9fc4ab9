"""Incremental benchmark: after a full history, one new landing file through the sensor and
declarative automation vs the full history itself, in the same run and Dagster instance.

Full (``full_s``): land N monthly files, one landing-sensor tick ingests all of them (raw +
features per partition, in-process as the daemon would launch them), one automation
evaluation records the baseline (it requests nothing), then the train job runs for every
trainable cutoff. Incremental (``incremental_s``): land file N+1 (same seed), one sensor tick
with the saved cursor, then automation with the saved cursor until a tick requests nothing.
The (asset, partition) pairs materialized since then are read back from the event log.

Prints a table, then (last stdout line) ``{"bench": "incremental", "full_s", "incremental_s",
"ratio", "materialized"}`` with ratio = incremental_s / full_s. Run: ``.venv/bin/python
bench/incremental.py [--quick] [--keep DIR]``.
"""

from __future__ import annotations

import sys
import time

from _common import (
    FULL,
    QUICK,
    Size,
    candidates_text,
    emit,
    generate,
    land,
    make_home,
    parse_args,
    progress,
    quiet,
    table,
    warm_imports,
    work_dir,
)

from mlplatform.defs.build import build_defs, train_job_name
from mlplatform.defs.runs import (
    RunOutcome,
    instance_for,
    landed_partitions,
    run_partitions,
    trainable_cutoffs,
)
from mlplatform.defs.ticks import (
    AutomationRun,
    latest_storage_id,
    materialized_since,
    run_automation,
    tick_landing_sensor,
)

Pair = tuple[str, str]


def show_run(i: int, n: int, outcome: RunOutcome) -> None:
    status = "ok" if outcome.success else "FAILED"
    progress(f"  [{i}/{n}] {outcome.job} {outcome.partition} {status} ({outcome.seconds:.1f}s)")


def show_automation(run: AutomationRun) -> None:
    status = "ok" if run.success else "FAILED"
    progress(f"  automation {run.partition} {', '.join(run.assets)} {status}")


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    quiet()
    warm_imports()
    size: Size = QUICK if args.quick else FULL
    steps: list[list[object]] = []
    with work_dir(args.keep) as root:
        settings, spec = make_home(root, "platform", size)
        progress(f"generating {size.months + 1} months x {size.rows:,} rows in {root}")
        files = generate(spec, root / "generated", size.months + 1, size.rows)
        history, new_file = files[:-1], files[-1]
        land(history, spec, settings)
        defs = build_defs(settings, [spec])
        with instance_for(settings) as instance:
            # ---- full history
            progress(f"full history: landing sensor over {len(history)} files ...")
            t0 = time.perf_counter()
            requests, ok, sensor_cursor = tick_landing_sensor(defs, instance, spec)
            t1 = time.perf_counter()
            if len(requests) != len(history) or not all(ok):
                raise SystemExit(f"sensor ingested {sum(ok)}/{len(history)} files")
            baseline, auto_cursor = run_automation(defs, instance)
            t2 = time.perf_counter()
            if baseline:
                raise SystemExit(f"automation baseline requested runs: {baseline}")
            keys, _ = landed_partitions(spec, settings.home)
            cutoffs = trainable_cutoffs(spec, keys)
            progress(f"full history: training {len(cutoffs)} cutoffs ...")
            outcomes = run_partitions(defs, instance, train_job_name(spec.name), cutoffs, show_run)
            t3 = time.perf_counter()
            failed = [f"{o.partition}: {o.error}" for o in outcomes if not o.success]
            if failed:
                raise SystemExit("training failed:\n" + "\n".join(failed))
            full_s = t3 - t0
            steps += [
                [f"full: landing sensor tick ({len(history)} partitions)", t1 - t0, len(ok)],
                ["full: automation baseline evaluation", t2 - t1, 0],
                [f"full: train job x {len(cutoffs)} cutoffs", t3 - t2, len(outcomes)],
                ["full total (full_s)", full_s, len(ok) + len(outcomes)],
            ]

            # ---- one new month
            mark = latest_storage_id(instance)
            new_key = new_file.stem
            land([new_file], spec, settings)
            progress(f"incremental: landed {new_file.name} ...")
            t0 = time.perf_counter()
            requests, ok, sensor_cursor = tick_landing_sensor(defs, instance, spec, sensor_cursor)
            t1 = time.perf_counter()
            runs, auto_cursor = run_automation(defs, instance, auto_cursor, on_run=show_automation)
            t2 = time.perf_counter()
            incremental_s = t2 - t0
            if [r.partition_key for r in requests] != [new_key] or not all(ok):
                raise SystemExit(f"sensor: expected one run for {new_key}, got {requests} {ok}")
            if not all(r.success for r in runs):
                raise SystemExit(f"automation runs failed: {[r for r in runs if not r.success]}")
            steps += [
                ["incremental: landing sensor tick (1 partition)", t1 - t0, len(ok)],
                ["incremental: automation until quiet", t2 - t1, len(runs)],
                ["incremental total (incremental_s)", incremental_s, len(ok) + len(runs)],
            ]
            materialized = sorted(materialized_since(instance, mark))

    p = spec.name
    expected = sorted(
        [(f"{p}/raw", new_key), (f"{p}/features", new_key)]
        + [(f"{p}/model/{c.name}", new_key) for c in spec.candidates]
        + [(f"{p}/evaluation", new_key), (f"{p}/bundle", new_key)]
    )
    ratio = round(incremental_s / full_s, 3)
    print(
        f"incremental benchmark: {p}, {size.months} monthly partitions x {size.rows:,} rows, "
        f"training window {size.window} -> {len(cutoffs)} cutoffs; then 1 new month {new_key}"
    )
    print(f"candidates: {candidates_text(spec)}")
    print()
    print(table(["step", "seconds", "runs"], steps))
    print()
    print(f"ratio incremental/full: {ratio:.3f} (goal <= 0.10)")
    print(f"materialized since the new file landed ({len(materialized)}):")
    for asset, partition in materialized:
        print(f"  {asset}  {partition}")
    verdict = "yes" if materialized == expected else f"NO (expected {expected})"
    print(f"exactly the new month and its cutoff's downstream: {verdict}")
    emit(
        {
            "bench": "incremental",
            "full_s": round(full_s, 3),
            "incremental_s": round(incremental_s, 3),
            "ratio": ratio,
            "materialized": [list(pair) for pair in materialized],
        }
    )


if __name__ == "__main__":
    sys.exit(main())
