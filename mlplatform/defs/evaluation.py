"""``<project>/evaluation``: every candidate scored on the cutoff partition (out-of-time)."""

from typing import TYPE_CHECKING

import dagster as dg
import pandas as pd

from mlplatform.defs.checks import check_results, check_specs
from mlplatform.defs.models import model_key
from mlplatform.defs.partitions import cutoff_partitions
from mlplatform.defs.versions import code_version
from mlplatform.resources.ledger import LedgerResource
from mlplatform.resources.store import ArtifactStore
from mlplatform.serving.bundle import Bundle, BundleError, load
from mlplatform.spec import ProjectSpec
from mlplatform.steps import candidates
from mlplatform.steps.candidates import FittedModel

if TYPE_CHECKING:
    # sklearn and matplotlib: imported by the run that evaluates, not by defining assets
    from mlplatform.steps import evaluate

# No ``from __future__ import annotations`` here: Dagster reads the asset functions' annotations
# (a string ``context`` annotation is refused).


def model_predictor(model: FittedModel) -> "evaluate.Predictor":
    """Score a trained candidate of any kind."""
    from mlplatform.steps import evaluate

    def predict(frame: pd.DataFrame) -> evaluate.Prediction:
        out = model.predict(frame)
        if model.classes is None:
            return evaluate.Prediction(values=out)
        return evaluate.Prediction(classes=list(model.classes), proba=out)

    return predict


def bundle_predictor(bundle: Bundle) -> "evaluate.Predictor":
    """Score the production bundle (ONNX) on the same holdout features as the candidates."""
    from mlplatform.steps import evaluate

    names = [n for n, _ in bundle.schema.layout]

    def predict(frame: pd.DataFrame) -> evaluate.Prediction:
        out = bundle.predict_features({n: frame[n].to_numpy() for n in names})
        if bundle.classes is None:
            return evaluate.Prediction(values=out)
        return evaluate.Prediction(classes=list(bundle.classes), proba=out)

    return predict


def production_predictor(
    spec: ProjectSpec,
    ledger: LedgerResource,
    store: ArtifactStore,
    holdout: pd.DataFrame,
    cutoff: str,
) -> "tuple[evaluate.Predictor | None, str]":
    """The current production bundle as a predictor, or None and why not: only when it trained
    on partitions before ``cutoff`` (scored on data it trained on, it would look better than it
    is and fail every "no worse than production" gate of a backtest)."""
    current = ledger.ledger.production(spec.name)
    if current is None:
        return None, "no production bundle yet"
    try:
        bundle = load(store.bundles_dir / current.to_bundle)
    except BundleError as exc:
        return None, f"production bundle unusable: {exc}"
    trained_on = bundle.manifest.get("training_manifest", {}).get("partitions", [])
    if any(key >= cutoff for key in trained_on):
        return None, f"production {current.to_bundle[:12]} trained on {cutoff} or later"
    missing = [n for n, _ in bundle.schema.layout if n not in holdout.columns]
    if missing:
        return None, f"production bundle needs features no longer built: {', '.join(missing)}"
    return bundle_predictor(bundle), current.to_bundle


def evaluation_asset(spec: ProjectSpec) -> dg.AssetsDefinition:
    key = dg.AssetKey([spec.name, "evaluation"])
    metric = spec.evaluation.primary_metric

    @dg.asset(
        key=key,
        partitions_def=cutoff_partitions(spec),
        ins={"holdout": dg.AssetIn(key=[spec.name, "features"])},
        deps=[model_key(spec, c.name) for c in spec.candidates],
        check_specs=check_specs(
            key,
            {"gates": "A candidate passes every metric gate of the spec on the holdout."},
            cutoff_partitions(spec),
        ),
        code_version=code_version(
            spec,
            ["mlplatform.steps.evaluate", "mlplatform.steps.report"],
            ["evaluation", "training"],
        ),
        group_name=spec.name,
        kinds={"html"},
        description="Candidates scored on the cutoff partition; HTML report; winner.",
    )
    def evaluation(
        context: dg.AssetExecutionContext,
        holdout: pd.DataFrame,
        store: ArtifactStore,
        ledger: LedgerResource,
    ) -> dg.MaterializeResult:
        from mlplatform.steps import evaluate, report

        cutoff = context.partition_key
        predictors: dict[str, evaluate.Predictor] = {}
        manifests = {}
        for cand in spec.candidates:
            path = store.model_file(spec.name, cand.name, cutoff, candidates.model_suffix(cand))
            predictors[cand.name] = model_predictor(candidates.load(path, spec, cand))
            manifests[cand.name] = store.read_json(path.with_suffix(".json"))
        production, production_note = production_predictor(spec, ledger, store, holdout, cutoff)
        if production is not None:
            predictors = {evaluate.PRODUCTION: production, **predictors}
        context.log.info(f"production for comparison: {production_note}")
        result = evaluate.evaluate(holdout, predictors, spec, cutoff)
        html = report.render_report(result, project=spec.name, training_manifests=manifests)
        report_path = report.write_report(html, store.report_file(spec.name, cutoff))
        store.write_json(
            store.evaluation_file(spec.name, cutoff),
            {"result": result.to_json(), "training_manifests": manifests},
        )
        context.log.info(f"winner for {cutoff}: {result.winner or 'none'}; report {report_path}")
        metadata: dict[str, object] = {
            "report": dg.MetadataValue.path(str(report_path)),
            "report_url": dg.MetadataValue.url(report_path.resolve().as_uri()),
            "winner": result.winner or "none",
            "holdout_rows": result.holdout_rows,
            "production": production_note,
        }
        for name, scores in result.models.items():
            for m, value in scores.metrics.items():
                if value == value:
                    metadata[f"{name}/{m}"] = float(value)
        problems = {"gates": [] if result.winner else result.reasons or ["no candidate qualifies"]}
        scores = {
            f"{n}/{metric}": float(s.metrics[metric])
            for n, s in result.models.items()
            if s.metrics.get(metric) == s.metrics.get(metric)
        }
        return dg.MaterializeResult(
            metadata=metadata, check_results=list(check_results(problems, {"gates": scores}))
        )

    return evaluation
