"""``<project>/model/<candidate>``: one fitted candidate (sklearn or torch) per training cutoff."""

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dagster as dg

from mlplatform.defs.frames import Frame
from mlplatform.defs.partitions import cutoff_partitions, window_and_holdout
from mlplatform.defs.versions import code_version
from mlplatform.promotion.policy import UNKNOWN
from mlplatform.resources.mlflow import MlflowTracking
from mlplatform.resources.search import SearchStorage
from mlplatform.spec import Candidate, ProjectSpec

if TYPE_CHECKING:  # numpy, pandas, optuna, sklearn, torch: imported by the run that trains
    import pandas as pd

    from mlplatform.steps import search_result, training
    from mlplatform.steps.window_files import WindowFiles

# No ``from __future__ import annotations`` here: Dagster reads the asset functions' annotations
# (a string ``context`` annotation is refused).


def triggered_by(tags: Mapping[str, str], in_process: bool) -> str:
    """Who started a run. ``mlplatform/user`` is believed only for a run the CLI executes in
    process (it writes the system account there); a run launched through Dagster (web UI,
    daemon) carries tags anyone launching it may type, so only Dagster+'s ``dagster/user``
    names a person there. Else the sensor or schedule that asked (Dagster's own tags), else
    the platform's trigger of an in-process run, else ``unknown``."""
    if in_process and tags.get("mlplatform/user"):
        return tags["mlplatform/user"]
    if os.environ.get("DAGSTER_CLOUD_DEPLOYMENT_NAME") and tags.get("dagster/user"):
        return tags["dagster/user"]
    for tag, kind in (("dagster/sensor_name", "sensor"), ("dagster/schedule_name", "schedule")):
        if tags.get(tag):
            return f"{kind}:{tags[tag]}"
    if in_process and tags.get("mlplatform/trigger"):
        return tags["mlplatform/trigger"]
    return UNKNOWN


def model_key(spec: ProjectSpec, candidate: str) -> dg.AssetKey:
    return dg.AssetKey([spec.name, "model", candidate])


SEARCH_MODULES = [
    "mlplatform.steps.search",
    "mlplatform.steps.search_result",
    "mlplatform.steps.search_space",
    "mlplatform.steps.search_storage",
]


def kind_modules(kind: str) -> list[str]:
    """The step modules whose code trains (and exports) a candidate kind."""
    if kind == "torch":
        return [
            "mlplatform.steps.candidates",
            "mlplatform.steps.model_types",
            "mlplatform.steps.train_torch",
            "mlplatform.steps.torch_network",
            "mlplatform.steps.torch_model",
            "mlplatform.steps.torch_onnx",
            "mlplatform.steps.window_files",
        ]
    return [
        "mlplatform.steps.candidates",
        "mlplatform.steps.model_types",
        "mlplatform.steps.train_sklearn",
    ]


def run_search(
    context: dg.AssetExecutionContext,
    spec: ProjectSpec,
    train: Frame,
    manifest: dict[str, Any],
    candidate: Candidate,
    url: str,
    mlflow: MlflowTracking,
) -> "search_result.SearchResult":
    """The candidate's hyperparameter search (resumed if an earlier run was cut short)."""
    from mlplatform.steps import search

    spec_search = candidate.search
    assert spec_search is not None
    cutoff = context.partition_key
    name = search.study_name(spec, candidate, cutoff, search.data_key(manifest))
    metric, _ = search.search_metric(spec, candidate)
    context.log.info(
        f"search {candidate.name}: study {name}, {spec_search.n_trials} trials on "
        f"{search.safe_url(url)}"
    )

    def on_trial(record: "search_result.TrialRecord") -> None:
        value = "-" if record.value is None else f"{record.value:.4f}"
        context.log.info(
            f"{candidate.name} trial {record.number} {record.state}: {metric} {value} "
            f"params {record.params}"
        )
        mlflow.log_trial(spec.name, candidate.name, cutoff, name, metric, record)

    result = search.run_search(train, spec, candidate, url, name, on_trial=on_trial)
    mlflow.log_search(spec.name, cutoff, result)
    context.log.info(
        f"search {candidate.name}: best trial {result.best_trial} {metric} "
        f"{result.best_value:.4f} with {result.best_params} ({result.complete} complete, "
        f"{result.pruned} pruned, {result.failed} failed, {result.resumed_from} resumed)"
    )
    return result


def model_code_version(spec: ProjectSpec, candidate: Candidate) -> str:
    """Changes with the code that trains the candidate's kind and the spec it reads."""
    return code_version(
        spec,
        [
            *kind_modules(candidate.kind),
            "mlplatform.steps.split",
            "mlplatform.steps.training",
            *(SEARCH_MODULES if candidate.search else []),
        ],
        ["training", "features", "task"],
        extra=candidate.model_dump(mode="json"),
    )


def provenance(context: dg.AssetExecutionContext) -> dict[str, Any]:
    """Which code version and run trained a model, and who started that run."""
    return {
        "code_version": context.assets_def.code_versions_by_key[context.asset_key],
        "dagster_run_id": context.run.run_id,
        "triggered_by": triggered_by(
            context.run.tags, in_process=context.run.remote_job_origin is None
        ),
    }


def model_metadata(
    result: "training.TrainingResult", train_rows: int, found: "search_result.SearchResult | None"
) -> dict[str, Any]:
    """What the UI shows of one trained candidate."""
    manifest = result.manifest
    metadata: dict[str, object] = {
        "train_rows": train_rows,
        "window": f"{manifest['partitions'][0]} .. {manifest['partitions'][-1]}",
        "fit_seconds": round(result.fit_seconds, 3),
        "mlflow_run_id": result.run_id,
    }
    if found is not None:
        metadata["search"] = (
            f"{found.finished} trials ({found.pruned} pruned, {found.resumed_from} resumed); "
            f"best {found.metric} {found.best_value:.4f}"
        )
        metadata["best_params"] = dg.MetadataValue.json(found.best_params)
    if "history" in manifest:
        metadata["epochs"] = len(manifest["history"])
        metadata["best_epoch"] = manifest["best_epoch"]
    return metadata


def streams(candidate: Candidate) -> bool:
    """Whether a candidate trains from its window's Parquet files read in batches (torch,
    without a search) instead of from one frame of the window."""
    return candidate.kind == "torch" and candidate.search is None


def training_window(
    spec: ProjectSpec, candidate: Candidate, partitions: dict[str, Any], cutoff: str
) -> tuple["pd.DataFrame | WindowFiles", dict[str, Any]]:
    """The training window before ``cutoff`` (sampled to ``training.max_rows``): one frame,
    or the partitions' files when the candidate ``streams`` (``partitions``: key -> file);
    and its manifest (partitions, their data versions, the sample, how it was read)."""
    from mlplatform.steps import split
    from mlplatform.steps.window_files import WindowFiles

    limit, seed = spec.training.max_rows, spec.training.seed
    if streams(candidate):
        files = WindowFiles({k: path for k, path in partitions.items() if k != cutoff})
        read = files.manifest()
        files, sample = files.sampled(limit, seed)
        return files, {**read, **({"sample": sample} if sample else {})}
    window = {k: frame for k, frame in partitions.items() if k != cutoff}
    manifest: dict[str, Any] = split.training_manifest(
        window, {k: f.attrs.get("raw_sha256") for k, f in window.items()}
    )
    window, sample = split.sampled_window(window, limit, seed)
    if sample is not None:
        manifest["sample"] = sample
    return split.training_frame(window), manifest


def window_input(spec: ProjectSpec, candidate: Candidate) -> dg.AssetIn:
    """The window and holdout feature partitions: ``{key: DataFrame}``, or ``{key: file}``
    for a candidate that ``streams``."""
    return dg.AssetIn(
        key=[spec.name, "features"],
        partition_mapping=window_and_holdout(spec),
        metadata={"partitions": "dict"},
        input_manager_key="parquet_files" if streams(candidate) else None,
    )


def model_asset(spec: ProjectSpec, candidate: Candidate) -> dg.AssetsDefinition:
    window = spec.training.window

    @dg.asset(
        key=model_key(spec, candidate.name),
        partitions_def=cutoff_partitions(spec),
        ins={"partitions": window_input(spec, candidate)},
        code_version=model_code_version(spec, candidate),
        io_manager_key="model_io",
        group_name=spec.name,
        kinds={candidate.kind},
        description=f"{candidate.label} trained on the {window} partitions before the cutoff.",
    )
    def model(
        context: dg.AssetExecutionContext,
        partitions: dict[str, Any],  # key -> DataFrame, or key -> file when it streams
        mlflow: MlflowTracking,
        search_db: SearchStorage,
    ) -> dg.Output[Any]:
        from mlplatform.steps import candidates, training
        from mlplatform.steps.model_types import TrainedModel
        from mlplatform.steps.window_files import WindowFiles

        cutoff = context.partition_key
        train, manifest = training_window(spec, candidate, partitions, cutoff)
        context.log.info(
            f"training {candidate.name} ({candidate.label}) on {len(train)} rows from "
            f"{manifest['partitions'][0]} to {manifest['partitions'][-1]}"
        )
        found = None
        if candidate.search is not None:
            assert not isinstance(train, WindowFiles)  # a search reads frames
            found = run_search(context, spec, train, manifest, candidate, search_db.url, mlflow)
        # the model files MLflow keeps are written here; the model IO manager stores the
        # asset's value (model and manifest) where evaluation and bundle load it
        with tempfile.TemporaryDirectory(prefix="mlplatform-model-") as scratch:
            result = training.train_candidate(
                train,
                spec,
                candidate,
                cutoff,
                Path(scratch) / f"{cutoff}{candidates.model_suffix(candidate)}",
                manifest,
                mlflow,
                found=found,
                provenance=provenance(context),
                log=context.log.info,
            )
        if found is not None:
            mlflow.nest_search(found.study_name, result.run_id)
        return dg.Output(
            TrainedModel(result.fitted, result.manifest),
            metadata=model_metadata(result, len(train), found),
        )

    return model
