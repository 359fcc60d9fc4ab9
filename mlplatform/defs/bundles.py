"""``<project>/bundle``: the winning candidate exported, audited, then published."""

from collections.abc import Iterator
from types import ModuleType
from typing import TYPE_CHECKING, Any

import dagster as dg

from mlplatform.defs.checks import check_results, check_specs, fail_if_any
from mlplatform.defs.frames import Frame
from mlplatform.defs.models import kind_modules
from mlplatform.defs.partitions import cutoff_partitions
from mlplatform.defs.versions import code_version
from mlplatform.resources.mlflow import MlflowTracking
from mlplatform.resources.model_io import load_trained
from mlplatform.resources.store import ArtifactStore
from mlplatform.spec import ProjectSpec

if TYPE_CHECKING:  # numpy, sklearn, torch: imported by the run that builds the bundle
    from mlplatform.steps.model_types import FittedModel

PARITY_TOLERANCE = 1e-4
BUNDLE_CHECKS = {
    "parity": f"ONNX bundle matches the fitted pipeline on the holdout (probabilities within "
    f"{PARITY_TOLERANCE} absolute, regression values within {PARITY_TOLERANCE} relative); size "
    "and single-row latency recorded.",
}


# Which run trained a model, when, and how long each epoch or trial took is lineage, kept in
# MLflow (the training run, and tags of the registered version): not identity. Retraining the
# same inputs with the same code and params gives the same bundle id.
RUN_FIELDS = ("dagster_run_id", "mlflow_run_id")
IDENTITY_FIELDS = (
    "cutoff",
    "candidate",
    "kind",
    "estimator",
    "params",
    "code_version",
    "partitions",
    "rows",
    "data_versions",
    "triggered_by",
    "best_epoch",
)
SEARCH_IDENTITY = ("study_name", "metric", "direction", "best_params", "params")


def training_identity(training: dict) -> dict:
    """The part of a model's training manifest that determines the model."""
    out = {k: training[k] for k in IDENTITY_FIELDS if k in training}
    if training.get("search"):
        out["search"] = {k: training["search"].get(k) for k in SEARCH_IDENTITY}
    return out


def bundle_manifest(spec: ProjectSpec, cutoff: str, evaluation: dict, code: str) -> dict:
    """Everything a bundle says about itself, except file hashes and its id: what determines
    its behaviour (inputs, code, params, metrics), never a clock or a run id."""
    from mlplatform.bundles.format import InputSchema
    from mlplatform.steps.features import layout

    result = evaluation["result"]
    winner = result["winner"]
    scores = result["models"][winner]
    pairs: list[tuple[str, str]] = [*layout(spec)]
    schema = InputSchema(dict(spec.columns), spec.features, spec.feature_columns, pairs).to_json()
    classes = None
    if spec.task != "regression":
        classes = scores["confusion"]["labels"]
    return {
        "format": 1,
        "project": spec.name,
        "task": spec.task,
        "target": spec.target,
        "cutoff": cutoff,
        "candidate": winner,
        "code_version": code,
        "training_manifest": training_identity(evaluation["training_manifests"][winner]),
        "metrics": scores["metrics"],
        "gates": scores["gates"],
        "primary_metric": result["primary_metric"],
        "input_schema": schema,
        "classes": classes,
    }


def export_modules(spec: ProjectSpec) -> list[str]:
    """The training modules (they hold the ONNX export) of the spec's candidate kinds."""
    kinds = sorted({c.kind for c in spec.candidates})
    return list(dict.fromkeys(m for kind in kinds for m in kind_modules(kind)))


def bundle_modules(spec: ProjectSpec) -> list[ModuleType | str]:
    """The modules whose code decides what the spec's bundle holds."""
    return [
        "mlplatform.bundles.build",
        "mlplatform.steps.sklearn_onnx",
        "mlplatform.bundles.format",
        "mlplatform.columns",
        "mlplatform.digests",
        *export_modules(spec),
    ]


def winning_model(
    spec: ProjectSpec, store: ArtifactStore, cutoff: str, evaluation: dict[str, Any]
) -> "tuple[str, FittedModel]":
    """The evaluation's winner and its model, loaded as the model IO manager loads the
    evaluation's inputs (the winner is known only from the evaluation); fails when no
    candidate won."""
    winner = evaluation["result"]["winner"]
    if not winner:
        raise dg.Failure(f"{spec.name} {cutoff}: no candidate passed the evaluation gates")
    cand = next(c for c in spec.candidates if c.name == winner)
    return winner, load_trained(store.root, spec, cand, cutoff).fitted


def parity_problems(audit: dict[str, float], holdout_rows: int) -> list[str]:
    """Why the bundle's ONNX graph does not predict as the trained model does (or nothing)."""
    if audit["parity_error"] <= PARITY_TOLERANCE:
        return []
    return [
        f"ONNX differs from the pipeline by {audit['parity_error']:.2e} "
        f"(> {PARITY_TOLERANCE}) on {holdout_rows} holdout rows"
    ]


def bundle_asset(spec: ProjectSpec) -> dg.AssetsDefinition:
    key = dg.AssetKey([spec.name, "bundle"])

    @dg.asset(
        key=key,
        partitions_def=cutoff_partitions(spec),
        ins={"holdout": dg.AssetIn(key=[spec.name, "features"])},
        deps=[dg.AssetKey([spec.name, "evaluation"])],
        check_specs=check_specs(key, BUNDLE_CHECKS, cutoff_partitions(spec)),
        code_version=code_version(spec, bundle_modules(spec), ["columns", "features"]),
        group_name=spec.name,
        kinds={"onnx", "mlflow"},
        description="Winning candidate as a content-addressed, pickle-free ONNX + JSON bundle.",
    )
    def bundle(
        context: dg.AssetExecutionContext,
        holdout: Frame,
        store: ArtifactStore,
        mlflow: MlflowTracking,
    ) -> Iterator[object]:
        from mlplatform.bundles import build  # onnx, onnxruntime: only in this run
        from mlplatform.bundles.format import verify

        cutoff = context.partition_key
        evaluation = store.read_json(store.evaluation_file(spec.name, cutoff))
        winner, model = winning_model(spec, store, cutoff, evaluation)
        code = context.assets_def.code_versions_by_key[context.asset_key] or ""
        manifest = bundle_manifest(spec, cutoff, evaluation, code)
        stage = build.write_bundle(store.staging_dir, model.to_onnx(), spec, manifest)
        try:
            audit = build.audit_bundle(stage, model, holdout, spec)
            problems = {"parity": parity_problems(audit, len(holdout))}
            yield from check_results(problems, {"parity": audit})
            fail_if_any(f"{spec.name} bundle {cutoff}", problems)
            # registered before it is published: a published bundle has a model version
            final = verify(stage)
            lineage = {k: str(evaluation["training_manifests"][winner].get(k)) for k in RUN_FIELDS}
            version = mlflow.register_bundle(spec.name, stage, final, lineage)
        except BaseException:
            build.discard_bundle(stage)
            raise
        published = build.publish_bundle(stage, store.bundles_dir)
        context.log.info(f"published bundle {final['bundle_id']} ({winner}) at {published}")
        yield dg.MaterializeResult(
            metadata={
                "bundle_id": final["bundle_id"],
                "path": dg.MetadataValue.path(str(published)),
                "candidate": winner,
                "mlflow_model_version": version,
                **{k: float(v) for k, v in audit.items()},
            }
        )

    return bundle
