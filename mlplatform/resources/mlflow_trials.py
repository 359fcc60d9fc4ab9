"""Optuna trials as MLflow runs nested under their search's run (idempotent: a resumed
search logs only the trials not logged yet)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

    from mlplatform.steps.search_result import TrialRecord

TRIAL_STATUS = {"COMPLETE": "FINISHED", "PRUNED": "KILLED", "FAIL": "FAILED"}


def logged_trials(client: MlflowClient, experiment: str, parent: str) -> set[int]:
    """Trial numbers already logged under a search run."""
    runs = client.search_runs(
        [experiment],
        filter_string=f"tags.`mlflow.parentRunId` = '{parent}'",
        max_results=50_000,
    )
    return {int(r.data.tags["mlplatform.trial"]) for r in runs if "mlplatform.trial" in r.data.tags}


def param_once(client: MlflowClient, run_id: str, key: str, value: object) -> None:
    """Log a param unless the run has it (a resumed search logs its parent again)."""
    if key not in client.get_run(run_id).data.params:
        client.log_param(run_id, key, str(value)[:6000])


def trial_run(
    client: MlflowClient,
    experiment: str,
    parent: str,
    candidate: str,
    cutoff: str,
    study: str,
    metric: str,
    record: TrialRecord,
) -> str | None:
    """One finished trial as a run nested under ``parent``; idempotent (None: still running)."""
    status = TRIAL_STATUS.get(record.state)
    if status is None:  # still RUNNING (maybe in another process): not logged yet
        return None
    existing = client.search_runs(
        [experiment],
        filter_string=f"tags.`mlflow.parentRunId` = '{parent}' "
        f"and tags.`mlplatform.trial` = '{record.number}'",
        max_results=1,
    )
    if existing:
        return str(existing[0].info.run_id)
    tags = {
        "mlflow.parentRunId": parent,
        "mlplatform.kind": "trial",
        "mlplatform.study": study,
        "mlplatform.trial": str(record.number),
        "mlplatform.candidate": candidate,
        "mlplatform.cutoff": cutoff,
        "optuna.state": record.state,
    }
    if record.error:
        tags["mlplatform.error"] = record.error[:5000]
    start = int(record.started * 1000) if record.started else None
    run = client.create_run(
        experiment,
        run_name=f"{candidate}-{cutoff}-trial-{record.number}",
        tags=tags,
        start_time=start,
    )
    run_id = str(run.info.run_id)
    for key, value in record.params.items():
        client.log_param(run_id, key, str(value)[:6000])
    for step, value in sorted(record.intermediate.items()):
        if value == value:
            client.log_metric(run_id, f"val_{metric}", value, step=step)
    if record.value is not None and record.value == record.value:
        client.log_metric(run_id, metric, record.value)
    if record.seconds is not None:
        client.log_metric(run_id, "seconds", record.seconds)
    end = int(record.finished * 1000) if record.finished else None
    client.set_terminated(run_id, status=status, end_time=end)
    return run_id
