"""Backfill benchmark: the full history through Dagster vs a bare script doing the same steps.

Both sides get the same landing files (generated once, copied into two fresh homes) and the
same spec and candidates. The bare script runs first, then the platform:

* bare: plain step functions in one process -- per month read and parse (the streamed Arrow
  path, ``ingest.ingest_landing``, as the ``raw`` asset runs it), build features, write
  features Parquet; per cutoff train every candidate on the previous ``window`` months, save
  it with skops, evaluate on the cutoff month, write the report, export the winner to ONNX,
  write, audit and publish the bundle. No Dagster, no MLflow.
* platform: ``build_defs`` + ``materialize_project`` on a Dagster instance in the platform
  home: one run per data partition (raw + features with their checks, drift included) and one
  run per cutoff (models, evaluation, bundle), with MLflow tracking and registry.

Prints a table, then (last stdout line) ``{"bench": "backfill", "platform_s", "bare_s",
"ratio"}`` with ratio = platform_s / bare_s. Run: ``.venv/bin/python bench/backfill.py
[--quick] [--keep DIR]``.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
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
from sklearn.pipeline import Pipeline

from mlplatform.bundles import build
from mlplatform.defs.build import build_defs, data_job_name, train_job_name
from mlplatform.defs.bundles import bundle_manifest
from mlplatform.defs.evaluation import model_predictor
from mlplatform.defs.runs import (
    RunOutcome,
    instance_for,
    landed_partitions,
    materialize_project,
    trainable_cutoffs,
)
from mlplatform.settings import Settings
from mlplatform.spec import ProjectSpec
from mlplatform.steps import evaluate, ingest, report, sklearn_onnx, split, train_sklearn
from mlplatform.steps.baselines import baseline_predictors
from mlplatform.steps.features import build_features

PARITY_TOLERANCE = 1e-4  # as the platform's bundle parity check


@dataclass
class Side:
    """What one side did and how long it took."""

    seconds: float = 0.0
    data_s: float = 0.0
    train_s: float = 0.0
    partitions: int = 0
    cutoffs: int = 0
    rows: int = 0
    winners: dict[str, tuple[str, float]] = field(default_factory=dict)


def write_json(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=True), encoding="utf-8")


def sklearn_predictor(pipeline: Pipeline, spec: ProjectSpec) -> evaluate.Predictor:
    return model_predictor(train_sklearn.SklearnModel(pipeline, spec))


def run_bare(spec: ProjectSpec, home: Path, keys: list[str], cutoffs: list[str]) -> Side:
    """The whole history with plain step functions in this process (no Dagster, no MLflow)."""
    side = Side(partitions=len(keys), cutoffs=len(cutoffs))
    started = time.perf_counter()
    features = {}
    shas = {}
    for i, key in enumerate(keys, 1):
        t0 = time.perf_counter()
        path = spec.landing_file(home, key)
        typed, quality, shas[key] = ingest.ingest_landing(path, spec)  # the Arrow path
        if not quality.passed:
            raise SystemExit(f"bare: {key} fails its quality checks: {quality.problems}")
        frame = build_features(typed, spec)
        frame.attrs = {"raw_sha256": shas[key]}
        out = home / "assets" / spec.name / "features" / f"{key}.parquet"
        out.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), out)
        features[key] = frame
        side.rows += quality.rows
        progress(f"  bare [{i}/{len(keys)}] data {key} ({time.perf_counter() - t0:.1f}s)")
    side.data_s = time.perf_counter() - started

    window = spec.training.window
    for i, cutoff in enumerate(cutoffs, 1):
        t0 = time.perf_counter()
        at = keys.index(cutoff)
        if at < window:
            raise SystemExit(f"bare: cutoff {cutoff} has fewer than {window} earlier partitions")
        parts = {k: features[k] for k in keys[at - window : at]}
        train = split.training_frame(parts)
        base = split.training_manifest(parts, {k: shas[k] for k in parts})
        pipelines: dict[str, Pipeline] = {}
        manifests: dict[str, dict] = {}
        for cand in spec.candidates:
            pipeline = train_sklearn.fit_candidate(train, spec, cand)
            path = home / "models" / spec.name / cand.name / f"{cutoff}.skops"
            train_sklearn.save_pipeline(pipeline, path)
            manifests[cand.name] = {
                **base,
                "cutoff": cutoff,
                "candidate": cand.name,
                "estimator": cand.estimator,
                "params": cand.params,
            }
            write_json(path.with_suffix(".json"), manifests[cand.name])
            pipelines[cand.name] = pipeline
        holdout = features[cutoff]
        predictors = {n: sklearn_predictor(p, spec) for n, p in pipelines.items()}
        targets = {k: f[spec.target].dropna().to_numpy() for k, f in parts.items()}
        baselines = baseline_predictors(spec, targets)
        result = evaluate.evaluate(holdout, predictors, spec, cutoff, baselines)
        html = report.render_report(result, project=spec.name, training_manifests=manifests)
        report.write_report(html, home / "reports" / spec.name / f"{cutoff}.html")
        evaluation = {"result": result.to_json(), "training_manifests": manifests}
        write_json(home / "evaluations" / spec.name / f"{cutoff}.json", evaluation)
        if not result.winner:
            raise SystemExit(f"bare: no candidate passed the gates for {cutoff}: {result.reasons}")
        winner = pipelines[result.winner]
        manifest = bundle_manifest(spec, cutoff, evaluation, "bare")
        stage = build.write_bundle(
            home / "staging", sklearn_onnx.pipeline_to_onnx(winner, spec), spec, manifest
        )
        audit = build.audit_bundle(stage, train_sklearn.SklearnModel(winner, spec), holdout, spec)
        if not audit["parity_error"] <= PARITY_TOLERANCE:
            build.discard_bundle(stage)
            raise SystemExit(f"bare: ONNX parity {audit['parity_error']:.2e} for {cutoff}")
        build.publish_bundle(stage, home / "bundles")
        metric = result.models[result.winner].metrics[spec.evaluation.primary_metric]
        side.winners[cutoff] = (result.winner, float(metric))
        progress(
            f"  bare [{i}/{len(cutoffs)}] train {cutoff} -> {result.winner} "
            f"({time.perf_counter() - t0:.1f}s)"
        )
    side.seconds = time.perf_counter() - started
    side.train_s = side.seconds - side.data_s
    return side


def run_platform(settings: Settings, spec: ProjectSpec) -> Side:
    """``build_defs`` + ``materialize_project`` over every landed partition and cutoff."""

    def show(i: int, n: int, outcome: RunOutcome) -> None:
        status = "ok" if outcome.success else "FAILED"
        progress(
            f"  platform [{i}/{n}] {outcome.job} {outcome.partition} {status} "
            f"({outcome.seconds:.1f}s)"
        )

    started = time.perf_counter()
    defs = build_defs(settings, [spec])
    with instance_for(settings) as instance:
        keys, stray = landed_partitions(spec, settings.home)
        cutoffs = trainable_cutoffs(spec, keys)
        outcomes = materialize_project(defs, instance, spec, keys, cutoffs, show)
    seconds = time.perf_counter() - started
    failed = [o for o in outcomes if not o.success]
    if stray or failed:
        lines = [f"{o.job} {o.partition}: {o.error}" for o in failed]
        raise SystemExit("platform runs failed:\n" + "\n".join(lines + [str(p) for p in stray]))
    side = Side(seconds=seconds, partitions=len(keys), cutoffs=len(cutoffs))
    side.data_s = sum(o.seconds for o in outcomes if o.job == data_job_name(spec.name))
    side.train_s = sum(o.seconds for o in outcomes if o.job == train_job_name(spec.name))
    metric = spec.evaluation.primary_metric
    for cutoff in cutoffs:
        path = settings.home / "evaluations" / spec.name / f"{cutoff}.json"
        result = json.loads(path.read_text(encoding="utf-8"))["result"]
        winner = result["winner"]
        side.winners[cutoff] = (winner, float(result["models"][winner]["metrics"][metric]))
    return side


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    quiet()
    warm_imports()
    size: Size = QUICK if args.quick else FULL
    with work_dir(args.keep) as root:
        bare_settings, spec = make_home(root, "bare", size)
        platform_settings, platform_spec = make_home(root, "platform", size)
        progress(f"generating {size.months} months x {size.rows:,} rows in {root}")
        files = generate(spec, root / "generated", size.months, size.rows)
        land(files, spec, bare_settings)
        land(files, platform_spec, platform_settings)
        keys, _ = landed_partitions(spec, bare_settings.home)
        cutoffs = trainable_cutoffs(spec, keys)

        progress("bare script ...")
        bare = run_bare(spec, bare_settings.home, keys, cutoffs)
        progress("platform ...")
        platform = run_platform(platform_settings, platform_spec)
    bare.rows = platform.rows = bare.rows  # the same files on both sides

    ratio = round(platform.seconds / bare.seconds, 3)
    same = [c for c in cutoffs if bare.winners[c][0] == platform.winners.get(c, ("",))[0]]
    gap = max((abs(bare.winners[c][1] - platform.winners[c][1]) for c in same), default=0.0)
    metric = spec.evaluation.primary_metric
    print(
        f"backfill benchmark: {spec.name}, {size.months} monthly partitions x {size.rows:,} rows,"
        f" training window {size.window} -> {len(cutoffs)} cutoffs"
    )
    print(f"candidates: {candidates_text(spec)}")
    print()
    headers = ["side", "seconds", "data_s", "train_s", "partitions", "cutoffs", "rows", "what"]
    rows = [
        [
            "bare",
            bare.seconds,
            bare.data_s,
            bare.train_s,
            bare.partitions,
            bare.cutoffs,
            bare.rows,
            "step functions in one process; no Dagster, no MLflow",
        ],
        [
            "platform",
            platform.seconds,
            platform.data_s,
            platform.train_s,
            platform.partitions,
            platform.cutoffs,
            platform.rows,
            "one Dagster run per partition/cutoff; + raw Parquet, checks, drift, MLflow",
        ],
    ]
    print(table(headers, rows))
    print()
    print(f"ratio platform/bare: {ratio:.3f} (goal <= 1.5)")
    print(
        f"same winner on {len(same)}/{len(cutoffs)} cutoffs; largest {metric} difference {gap:.2e}"
    )
    emit(
        {
            "bench": "backfill",
            "platform_s": round(platform.seconds, 3),
            "bare_s": round(bare.seconds, 3),
            "ratio": ratio,
        }
    )


if __name__ == "__main__":
    sys.exit(main())
