"""``<project>/evaluation``: every candidate scored on the cutoff partition (out-of-time)."""

from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import dagster as dg

from mlplatform.defs.checks import check_results, check_specs
from mlplatform.defs.frames import Frame
from mlplatform.defs.models import model_key
from mlplatform.defs.partitions import cutoff_partitions, data_partitions, previous_window
from mlplatform.defs.versions import code_version
from mlplatform.resources.ledger import LedgerResource
from mlplatform.resources.mlflow import MlflowTracking
from mlplatform.resources.mlflow_cutoff import Partition
from mlplatform.resources.store import ArtifactStore
from mlplatform.spec import ProjectSpec

if TYPE_CHECKING:
    # numpy, pandas, sklearn, onnxruntime, matplotlib: imported by the run that evaluates,
    # not by defining assets
    from mlplatform.bundles.format import Bundle
    from mlplatform.steps import evaluate
    from mlplatform.steps.model_types import FittedModel, TrainedModel

# No ``from __future__ import annotations`` here: Dagster reads the asset functions' annotations
# (a string ``context`` annotation is refused).


def model_predictor(model: "FittedModel") -> "evaluate.Predictor":
    """Score a trained candidate of any kind."""
    from mlplatform.steps import evaluate

    def predict(frame: Frame) -> evaluate.Prediction:
        out = model.predict(frame)
        if model.classes is None:
            return evaluate.Prediction(values=out)
        return evaluate.Prediction(classes=list(model.classes), proba=out)

    return predict


def bundle_predictor(bundle: "Bundle") -> "evaluate.Predictor":
    """Score the production bundle (ONNX) on the same holdout features as the candidates."""
    from mlplatform.steps import evaluate

    names = [n for n, _ in bundle.schema.layout]

    def predict(frame: Frame) -> evaluate.Prediction:
        out = bundle.predict_features({n: frame[n].to_numpy() for n in names})
        if bundle.classes is None:
            return evaluate.Prediction(values=out)
        return evaluate.Prediction(classes=list(bundle.classes), proba=out)

    return predict


def production_predictor(
    spec: ProjectSpec,
    ledger: LedgerResource,
    store: ArtifactStore,
    holdout: Frame,
    cutoff: str,
) -> "tuple[evaluate.Predictor | None, evaluate.ProductionEntry]":
    """The current production bundle as a predictor, or None and why not: only when every
    partition it trained on precedes ``cutoff`` (scored on data it trained on, it would look
    better than it is and fail every "no worse than production" gate of a backtest)."""
    from mlplatform.bundles.format import BundleError, load
    from mlplatform.steps.evaluate import ProductionEntry

    current = ledger.ledger.production(spec.name)
    if current is None:
        return None, ProductionEntry(None, False, "no production bundle yet")
    bundle_id = current.to_bundle
    try:
        bundle = load(store.bundles_dir / bundle_id)
    except BundleError as exc:
        return None, ProductionEntry(bundle_id, False, f"production bundle unusable: {exc}")
    trained_on = bundle.manifest.get("training_manifest", {}).get("partitions", [])
    if cutoff in trained_on:
        return None, ProductionEntry(
            bundle_id, False, "not comparable: production trained on this holdout"
        )
    if any(key > cutoff for key in trained_on):
        return None, ProductionEntry(
            bundle_id, False, "not comparable: production trained on data after this holdout"
        )
    missing = [n for n, _ in bundle.schema.layout if n not in holdout.columns]
    if missing:
        note = f"production bundle needs features no longer built: {', '.join(missing)}"
        return None, ProductionEntry(bundle_id, False, note)
    return bundle_predictor(bundle), ProductionEntry(bundle_id, True, "compared on this holdout")


def season_partition(spec: ProjectSpec, cutoff: str) -> str | None:
    """The data partition one ``evaluation.season`` before the holdout ``cutoff``, if defined."""
    season = spec.evaluation.season
    keys = data_partitions(spec).get_partition_keys()
    if season is None or cutoff not in keys or keys.index(cutoff) < season:
        return None
    return keys[keys.index(cutoff) - season]


def baselines_for(
    spec: ProjectSpec, store: ArtifactStore, cutoff: str
) -> "tuple[dict[str, evaluate.Predictor], list[str]]":
    """Baseline predictors fitted on the stored training window of ``cutoff`` (features hold
    the target), and notes on what could not be built."""
    from mlplatform.steps import baselines

    key = dg.AssetKey([spec.name, "features"])
    window = store.read_partitions(key, previous_window(spec, cutoff))
    targets = {k: f[spec.target].dropna().to_numpy() for k, f in window.items()}
    notes = [] if targets else ["no baseline: the training window is not stored"]
    seasonal = None
    season_key = season_partition(spec, cutoff)
    if spec.task == "regression" and spec.evaluation.season is not None:
        stored = store.read_partitions(key, [season_key] if season_key else [])
        if season_key in stored:
            seasonal = stored[season_key][spec.target].dropna().to_numpy()
        else:
            notes.append(
                f"no seasonal-naive baseline: partition {season_key or 'one season before'} "
                f"(evaluation.season={spec.evaluation.season} before {cutoff}) is not stored"
            )
    return baselines.baseline_predictors(spec, targets, seasonal), notes


EVALUATION_MODULES: list[ModuleType | str] = [
    "mlplatform.steps.evaluate",
    "mlplatform.steps.gates",
    "mlplatform.steps.baselines",
    "mlplatform.steps.report",
]


def model_input(candidate: str) -> str:
    """The evaluation's input name of a candidate's model."""
    return f"model_{candidate}"


def candidate_predictors(
    spec: ProjectSpec, models: "Mapping[str, TrainedModel]"
) -> "tuple[dict[str, evaluate.Predictor], dict[str, Any]]":
    """Each candidate's model (the evaluation's inputs) as a predictor, and its training
    manifest, in the spec's order."""
    predictors: dict[str, evaluate.Predictor] = {}
    manifests = {}
    for cand in spec.candidates:
        trained = models[model_input(cand.name)]
        predictors[cand.name] = model_predictor(trained.fitted)
        manifests[cand.name] = trained.manifest
    return predictors, manifests


def evaluation_metadata(
    result: "evaluate.EvaluationResult",
    entry: "evaluate.ProductionEntry",
    report_path: Path,
    report_link: str,
) -> dict[str, Any]:
    """The evaluation's Dagster metadata: report, winner, production, baselines, every score."""
    from mlplatform.steps import evaluate

    metadata: dict[str, Any] = {
        "report": dg.MetadataValue.path(str(report_path)),
        "report_url": dg.MetadataValue.url(report_link),
        "winner": result.winner or "none",
        "holdout_rows": result.holdout_rows,
        "production": entry.bundle_id if entry.comparable else entry.note,
        "production_bundle": entry.bundle_id or "none",
        "production_comparable": entry.comparable,
        "baselines": ", ".join(n for n, s in result.models.items() if s.kind == evaluate.BASELINE)
        or "none",
    }
    if result.reasons:
        metadata["reasons"] = dg.MetadataValue.md("\n".join(f"- {r}" for r in result.reasons))
    for name, scores in result.models.items():
        for m, value in scores.metrics.items():
            if value == value:
                metadata[f"{name}/{m}"] = float(value)
    return metadata


def compare(
    spec: ProjectSpec,
    cutoff: str,
    holdout: Frame,
    models: Mapping[str, Any],
    ledger: LedgerResource,
    store: ArtifactStore,
    log: Any,
) -> "tuple[evaluate.EvaluationResult, dict[str, Any], evaluate.ProductionEntry]":
    """Every candidate, production and the baselines scored on the cutoff's holdout."""
    from mlplatform.steps import evaluate

    predictors, manifests = candidate_predictors(spec, models)
    production, entry = production_predictor(spec, ledger, store, holdout, cutoff)
    if production is not None:
        predictors = {evaluate.PRODUCTION: production, **predictors}
    log.info(f"production for comparison: {entry.bundle_id or '-'}: {entry.note}")
    baselines, notes = baselines_for(spec, store, cutoff)
    for note in notes:
        log.warning(note)
    result = evaluate.evaluate(holdout, predictors, spec, cutoff, baselines, entry)
    result.reasons += notes
    return result, manifests, entry


def gate_check(result: "evaluate.EvaluationResult", metric: str) -> list[dg.AssetCheckResult]:
    """The ``gates`` check: passes when a candidate won; each model's metric as metadata."""
    problems = {"gates": [] if result.winner else result.reasons or ["no candidate qualifies"]}
    scores = {
        f"{n}/{metric}": float(s.metrics[metric])
        for n, s in result.models.items()
        if s.metrics.get(metric) == s.metrics.get(metric)
    }
    return list(check_results(problems, {"gates": scores}))


def evaluation_asset(spec: ProjectSpec) -> dg.AssetsDefinition:
    key = dg.AssetKey([spec.name, "evaluation"])
    metric = spec.evaluation.primary_metric

    @dg.asset(
        key=key,
        partitions_def=cutoff_partitions(spec),
        ins={
            "holdout": dg.AssetIn(key=[spec.name, "features"]),
            **{
                model_input(c.name): dg.AssetIn(key=model_key(spec, c.name))
                for c in spec.candidates
            },
        },
        check_specs=check_specs(
            key,
            {"gates": "A candidate passes every metric gate of the spec on the holdout."},
            cutoff_partitions(spec),
        ),
        code_version=code_version(spec, EVALUATION_MODULES, ["evaluation", "training"]),
        group_name=spec.name,
        kinds={"html"},
        description="Candidates scored on the cutoff partition; HTML report; winner.",
    )
    def evaluation(
        context: dg.AssetExecutionContext,
        holdout: Frame,
        store: ArtifactStore,
        ledger: LedgerResource,
        mlflow: MlflowTracking,
        **models: Any,  # TrainedModel per candidate (model_input names)
    ) -> dg.MaterializeResult:
        from mlplatform.steps import report

        cutoff = context.partition_key
        result, manifests, entry = compare(
            spec, cutoff, holdout, models, ledger, store, context.log
        )
        html = report.render_report(result, project=spec.name, training_manifests=manifests)
        report_path = report.write_report(html, store.report_file(spec.name, cutoff))
        store.write_json(
            store.evaluation_file(spec.name, cutoff),
            {"result": result.to_json(), "training_manifests": manifests},
        )
        context.log.info(f"winner for {cutoff}: {result.winner or 'none'}; report {report_path}")
        holdout_part = Partition(cutoff, holdout.attrs.get("raw_sha256"), len(holdout))
        mlflow.record_evaluation(
            spec.name, cutoff, result.to_json(), manifests, report_path, holdout_part
        )
        link = store.report_link(spec.name, cutoff)
        return dg.MaterializeResult(
            metadata=evaluation_metadata(result, entry, report_path, link),
            check_results=gate_check(result, metric),
        )

    return evaluation
