"""One MLflow parent run per training cutoff: candidate trainings and searches nest under it;
it holds the evaluation's scores of every model, the report and the datasets as MLflow inputs."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

PARENT_KIND = "cutoff"
PARENT_TAG = "mlflow.parentRunId"
# MLflow's experiment type: runs and models ("custom model development"), not GenAI traces
EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")
# the SQL tracking store keeps a dataset digest in 36 characters: a sha256 prefix; the full
# hash is in the dataset's profile and an input tag
DIGEST_CHARS = 32
TRAINING = "training"
HOLDOUT = "holdout"


@dataclass(frozen=True)
class Partition:
    """One landing partition a run read: its key, raw content hash and row count."""

    key: str
    sha256: str | None
    rows: int | None = None


def parent_run_name(project: str, cutoff: str) -> str:
    return f"{project} {cutoff}"


def cutoff_run(client: MlflowClient, experiment_id: str, project: str, cutoff: str) -> str:
    """The cutoff's parent run, created on first use. Two trainings starting together may both
    create one: the oldest wins and the other is deleted, so one parent remains."""
    found = _parents(client, experiment_id, cutoff)
    if found:
        return found[0]
    run = client.create_run(
        experiment_id,
        run_name=parent_run_name(project, cutoff),
        tags={"mlplatform.kind": PARENT_KIND, "mlplatform.cutoff": cutoff},
    )
    mine = str(run.info.run_id)
    client.log_param(mine, "cutoff", cutoff)
    first = _parents(client, experiment_id, cutoff)[0]
    if first != mine:
        client.delete_run(mine)
    return first


def _parents(client: MlflowClient, experiment_id: str, cutoff: str) -> list[str]:
    runs = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`mlplatform.kind` = '{PARENT_KIND}' "
        f"and tags.`mlplatform.cutoff` = '{cutoff}'",
        order_by=["attributes.start_time ASC", "attributes.run_id ASC"],
        max_results=10,
    )
    return [str(r.info.run_id) for r in runs]


def log_partitions(
    client: MlflowClient, run_id: str, project: str, partitions: list[Partition], context: str
) -> None:
    """The landing partitions as MLflow dataset inputs (digest: the file's sha256)."""
    from mlflow.entities import Dataset, DatasetInput, InputTag

    inputs = []
    for part in partitions:
        digest = (part.sha256 or "unknown")[:DIGEST_CHARS]
        profile = {"partition": part.key, "sha256": part.sha256, "rows": part.rows}
        dataset = Dataset(
            name=f"{project}/{part.key}",
            digest=digest,
            source_type="landing",
            source=json.dumps({"project": project, "partition": part.key}),
            profile=json.dumps(profile),
        )
        tags = [
            InputTag("mlflow.data.context", context),
            InputTag("mlplatform.partition", part.key),
            InputTag("mlplatform.sha256", part.sha256 or ""),
        ]
        inputs.append(DatasetInput(dataset, tags=tags))
    if inputs:
        client.log_inputs(run_id, datasets=inputs)


def training_partitions(manifest: Mapping[str, object]) -> list[Partition]:
    """The partitions a training manifest names, with their hashes and row counts."""
    versions = manifest.get("data_versions") or {}
    rows = manifest.get("rows") or {}
    assert isinstance(versions, dict) and isinstance(rows, dict)
    return [
        Partition(str(key), versions.get(key), rows.get(key))
        for key in manifest.get("partitions") or []  # type: ignore[attr-defined]
    ]


def log_scores(
    client: MlflowClient, run_id: str, scores: Mapping[str, Mapping[str, object]], prefix: str = ""
) -> None:
    """Finite metrics as ``<prefix><model>/<metric>`` (or ``<prefix><metric>`` for one model
    given as ``""``)."""
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    batch = [
        Metric(f"{prefix}{name}/{m}" if name else f"{prefix}{m}", float(v), now, 0)
        for name, metrics in scores.items()
        for m, v in metrics.items()
        if isinstance(v, int | float) and v == v and abs(v) != float("inf")
    ]
    for start in range(0, len(batch), 500):
        client.log_batch(run_id, metrics=batch[start : start + 500])


def log_report(client: MlflowClient, run_id: str, report: Path) -> None:
    client.log_artifact(run_id, str(report), artifact_path="report")
