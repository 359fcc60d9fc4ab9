"""``<project>__alerts``: a sensor that turns events into webhook alerts, each sent once.

Events: a failed check (blocking ones; with ``alerts.warnings`` also WARN ones: drift,
decay or any check added later alerts through this path without more code), a failed or
crashed run, and a promotion or rollback (read from the ledger, so the CLI's and the API's
count too). The cursor remembers where each source was read up to, the keys of alerts sent
(a check failing again for the same reason is not re-sent until it passes) and the alerts
that could not be delivered yet (tried again on the next tick, oldest first).
"""

from __future__ import annotations

import json
import os
from typing import Any

import dagster as dg

from mlplatform.alerting import messages
from mlplatform.alerting.messages import Alert
from mlplatform.defs.dagster_internals import AssetCheckExecutionRecordStatus as Status
from mlplatform.defs.status import error_text
from mlplatform.resources.ledger import LedgerResource
from mlplatform.spec import ProjectSpec
from mlplatform.spec.alerts import Alerts

MAX_REMEMBERED = 2000  # keys of sent alerts kept for deduplication
MAX_PENDING = 200  # undelivered alerts kept for the next ticks
BATCH = 500  # run failures read per tick
CHECK_WINDOW = 100  # newest executions read per check and tick


def _run_failures(instance: dg.DagsterInstance, after: int | None, limit: int) -> list[Any]:
    return list(
        instance.fetch_run_status_changes(
            dg.RunStatusChangeRecordsFilter(
                event_type=dg.DagsterEventType.RUN_FAILURE, after_storage_id=after
            ),
            limit=limit,
            ascending=after is not None,
        ).records
    )


def _of_project(run: dg.DagsterRun | None, project: str) -> bool:
    if run is None:
        return False
    if run.tags.get("mlplatform/project") == project or run.job_name.startswith(f"{project}__"):
        return True
    return any(key.path[0] == project for key in run.asset_selection or ())


def check_keys(context: dg.SensorEvaluationContext, project: str) -> list[dg.AssetCheckKey]:
    """Every asset check of the project, whoever defined it."""
    graph = context.repository_def.asset_graph if context.repository_def else None
    keys = graph.asset_check_keys if graph is not None else ()
    return sorted((k for k in keys if k.asset_key.path[0] == project), key=str)


def _executions(instance: dg.DagsterInstance, key: dg.AssetCheckKey) -> list[Any]:
    return list(instance.event_log_storage.get_asset_check_execution_history(key, CHECK_WINDOW))


def check_alerts(
    context: dg.SensorEvaluationContext, spec: ProjectSpec, cursor: dict[str, Any]
) -> list[Alert]:
    """Failed check executions of the project not handled yet. Per check the cursor keeps a
    floor (every execution at or below it was handled) and the handled ids above it: an
    execution still running when one tick reads it is handled on a later tick. A passed
    execution forgets the sent failures of that check and partition (the next one alerts)."""
    found = []
    for key in check_keys(context, spec.name):
        name = key.to_user_string()
        seen = cursor["checks"].get(name, {"floor": 0, "done": []})
        done = set(seen["done"])
        records = [r for r in _executions(context.instance, key) if r.id > seen["floor"]]
        for record in sorted(records, key=lambda r: r.id):
            data = record.evaluation
            if record.status == Status.PLANNED or record.id in done or data is None:
                continue
            done.add(record.id)
            asset = "/".join(key.asset_key.path)
            partition = record.partition or data.partition
            prefix = messages.check_prefix(asset, key.name, partition)
            if data.passed:
                cursor["sent"] = [k for k in cursor["sent"] if not k.startswith(prefix)]
                continue
            blocking = (
                bool(data.blocking)
                if data.blocking is not None
                else data.severity == dg.AssetCheckSeverity.ERROR
            )
            if blocking or spec.alerts.warnings:
                why = data.description or ""
                found.append(
                    messages.failed_check(
                        spec.name, asset, key.name, partition, blocking, why, record.run_id
                    )
                )
        planned = [r.id for r in records if r.status == Status.PLANNED]
        floor = min(planned) - 1 if planned else max([seen["floor"], *(r.id for r in records)])
        cursor["checks"][name] = {"floor": floor, "done": sorted(i for i in done if i > floor)}
    return found


def run_alerts(
    instance: dg.DagsterInstance, spec: ProjectSpec, cursor: dict[str, Any], folded: set[str]
) -> list[Alert]:
    """Failed or crashed runs of the project since the cursor, except runs in ``folded``
    (a run stopped by a failed blocking check: that check's alert says it already)."""
    found = []
    for record in _run_failures(instance, cursor["run"], BATCH):
        cursor["run"] = record.storage_id
        entry = record.event_log_entry
        run = instance.get_run_by_id(entry.run_id)
        if run is None or not _of_project(run, spec.name) or entry.run_id in folded:
            continue
        why = entry.dagster_event.message if entry.dagster_event else entry.user_message
        found.append(
            messages.failed_run(
                spec.name,
                entry.run_id,
                run.job_name,
                run.tags.get("dagster/partition"),
                _step_error(instance, entry.run_id) or why or "failed",
            )
        )
    return found


def _step_error(instance: dg.DagsterInstance, run_id: str) -> str | None:
    """The first step failure's message of a run (what went wrong, not just 'failed')."""
    records = instance.get_records_for_run(
        run_id, of_type=dg.DagsterEventType.STEP_FAILURE, limit=1
    ).records
    for record in records:
        event = record.event_log_entry.dagster_event
        error = getattr(event.event_specific_data, "error", None) if event else None
        if error is not None:
            return error_text(error)
    return None


def promotion_alerts(rows: list[Any], spec: ProjectSpec, cursor: dict[str, Any]) -> list[Alert]:
    found = []
    for row in rows:
        if row.id <= cursor["promotion"]:
            continue
        cursor["promotion"] = row.id
        found.append(
            messages.promotion(
                spec.name, row.id, row.kind, row.from_bundle, row.to_bundle, row.actor, row.reason
            )
        )
    return found


def _start(context: dg.SensorEvaluationContext, project: str, rows: list[Any]) -> dict[str, Any]:
    """The first tick: alerts start now, nothing from before the sensor first ran is sent."""
    failures = _run_failures(context.instance, None, 1)
    checks: dict[str, Any] = {}
    for key in check_keys(context, project):
        ids = [r.id for r in _executions(context.instance, key)]
        checks[key.to_user_string()] = {"floor": max(ids, default=0), "done": []}
    return {
        "checks": checks,
        "run": failures[0].storage_id if failures else 0,
        "promotion": max((r.id for r in rows), default=0),
        "sent": [],
        "pending": [],
    }


def deliver(
    queue: list[Alert], url: str, conf: Alerts, sent: set[str], log: Any, project: str
) -> tuple[list[Alert], list[Alert]]:
    """POST the queued alerts in order: (delivered, kept for the next tick). Once one cannot
    be delivered the rest wait behind it; one the receiver refuses (4xx) is dropped."""
    from mlplatform.alerting.webhook import post

    delivered: list[Alert] = []
    pending: list[Alert] = []
    for alert in queue:
        if pending or alert.key in sent:
            if alert.key not in sent:
                pending.append(alert)
            continue
        result = post(
            url,
            alert,
            retries=conf.retries,
            backoff_seconds=conf.backoff_seconds,
            timeout_seconds=conf.timeout_seconds,
        )
        if result.ok:
            delivered.append(alert)
            sent.add(alert.key)
        elif result.retryable:
            log.warning(f"{project}: alert not delivered ({result.problem}); kept")
            pending.append(alert)
        else:  # the receiver refuses it: keeping it would hold back every later alert
            log.error(f"{project}: alert dropped ({result.problem}): {alert.text}")
    return delivered, pending


def alerts_sensor(spec: ProjectSpec) -> dg.SensorDefinition:
    """Sends the project's alerts to the webhook named by ``alerts.webhook_env``; stopped when
    the spec has no webhook."""
    p = spec.name
    conf = spec.alerts

    @dg.sensor(
        name=f"{p}__alerts",
        minimum_interval_seconds=spec.automation.sensor_interval_seconds,
        default_status=(
            dg.DefaultSensorStatus.RUNNING if conf.webhook_env else dg.DefaultSensorStatus.STOPPED
        ),
        description=f"Webhook alerts of {p}: {', '.join(conf.events)}.",
    )
    def alerts(context: dg.SensorEvaluationContext, ledger: LedgerResource) -> dg.SkipReason:
        from mlplatform.alerting.webhook import where

        rows = ledger.ledger.history(p)
        if not context.cursor:
            context.update_cursor(json.dumps(_start(context, p, rows)))
            return dg.SkipReason("alerts start now: earlier events are not sent")
        cursor = json.loads(context.cursor)
        new = check_alerts(context, spec, cursor)
        folded = {a.details["run_id"] for a in new if a.details.get("blocking")}
        new += run_alerts(context.instance, spec, cursor, folded)
        new += promotion_alerts(rows, spec, cursor)
        sent = set(cursor["sent"])
        queue = [Alert.from_json(a) for a in cursor["pending"]]
        queue += [a for a in new if a.event in conf.events and a.key not in sent]
        url = os.environ.get(conf.webhook_env or "", "")
        if not url:
            cursor["pending"] = [a.to_json() for a in queue][-MAX_PENDING:]
            context.update_cursor(json.dumps(cursor))
            return dg.SkipReason(
                f"{len(queue)} alert(s) kept: set the environment variable "
                f"{conf.webhook_env or '(alerts.webhook_env in the spec)'} to the webhook URL"
            )
        delivered, pending = deliver(queue, url, conf, sent, context.log, p)
        cursor["sent"] += [a.key for a in delivered]
        cursor["sent"] = cursor["sent"][-MAX_REMEMBERED:]
        cursor["pending"] = [a.to_json() for a in pending][-MAX_PENDING:]
        context.update_cursor(json.dumps(cursor))
        return dg.SkipReason(
            f"{len(delivered)} alert(s) sent to {where(url)}, {len(pending)} kept for the next tick"
        )

    return alerts
