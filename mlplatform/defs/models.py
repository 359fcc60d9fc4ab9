"""``<project>/model/<candidate>``: one fitted pipeline per training cutoff."""

import time

import dagster as dg
import pandas as pd

from mlplatform.defs.automation import condition_for
from mlplatform.defs.partitions import cutoff_partitions, window_and_holdout
from mlplatform.defs.versions import code_version
from mlplatform.resources.mlflow import MlflowTracking
from mlplatform.resources.store import ArtifactStore
from mlplatform.spec import Candidate, ProjectSpec
from mlplatform.steps import split, train_sklearn


def triggered_by(tags: dict[str, str]) -> str:
    """Who started a run: the CLI user, a Dagster user, or the sensor/schedule that did."""
    for tag in ("mlplatform/user", "dagster/user"):
        if tags.get(tag):
            return tags[tag]
    for tag, kind in (("dagster/sensor_name", "sensor"), ("dagster/schedule_name", "schedule")):
        if tags.get(tag):
            return f"{kind}:{tags[tag]}"
    if tags.get("mlplatform/trigger"):
        return f"{tags['mlplatform/trigger']}"
    return "web-ui"


def model_key(spec: ProjectSpec, candidate: str) -> dg.AssetKey:
    return dg.AssetKey([spec.name, "model", candidate])


def model_asset(spec: ProjectSpec, candidate: Candidate) -> dg.AssetsDefinition:
    window = spec.training.window

    @dg.asset(
        key=model_key(spec, candidate.name),
        partitions_def=cutoff_partitions(spec),
        ins={
            "partitions": dg.AssetIn(
                key=[spec.name, "features"],
                partition_mapping=window_and_holdout(spec),
                metadata={"partitions": "dict"},
            )
        },
        automation_condition=condition_for(spec),
        backfill_policy=dg.BackfillPolicy.multi_run(1),
        code_version=code_version(
            spec,
            [train_sklearn, split],
            ["training", "features", "task"],
            extra=candidate.model_dump(mode="json"),
        ),
        group_name=spec.name,
        kinds={"sklearn"},
        description=f"{candidate.estimator} trained on the {window} partitions before the cutoff.",
    )
    def model(
        context: dg.AssetExecutionContext,
        partitions: dict[str, pd.DataFrame],
        store: ArtifactStore,
        mlflow: MlflowTracking,
    ) -> dg.MaterializeResult:
        cutoff = context.partition_key
        window = {k: frame for k, frame in partitions.items() if k != cutoff}
        train = split.training_frame(window)
        manifest = split.training_manifest(
            window, {k: f.attrs.get("raw_sha256") for k, f in window.items()}
        )
        context.log.info(
            f"training {candidate.name} ({candidate.estimator}) on {len(train)} rows from "
            f"{manifest['partitions'][0]} to {manifest['partitions'][-1]}"
        )
        started = time.perf_counter()
        pipeline = train_sklearn.fit_candidate(train, spec, candidate)
        fit_seconds = time.perf_counter() - started
        path = store.model_file(spec.name, candidate.name, cutoff)
        train_sklearn.save_pipeline(pipeline, path)
        manifest = {
            **manifest,
            "cutoff": cutoff,
            "candidate": candidate.name,
            "estimator": candidate.estimator,
            "params": candidate.params,
            "code_version": context.assets_def.code_versions_by_key[context.asset_key],
            "dagster_run_id": context.run.run_id,
            "triggered_by": triggered_by(context.run.tags),
        }
        run_id = mlflow.log_training(
            spec.name,
            run_name=f"{candidate.name}-{cutoff}",
            params={"estimator": candidate.estimator, **candidate.params, "cutoff": cutoff},
            metrics={"train_rows": float(len(train)), "fit_seconds": fit_seconds},
            manifest=manifest,
            tags={"mlplatform.candidate": candidate.name, "mlplatform.cutoff": cutoff},
            model_file=path,
        )
        manifest["mlflow_run_id"] = run_id
        store.write_json(path.with_suffix(".json"), manifest)
        return dg.MaterializeResult(
            metadata={
                "path": dg.MetadataValue.path(str(path)),
                "train_rows": len(train),
                "window": f"{manifest['partitions'][0]} .. {manifest['partitions'][-1]}",
                "fit_seconds": round(fit_seconds, 3),
                "mlflow_run_id": run_id,
            }
        )

    return model
