"""``<project>/monitoring``: one period of the prediction log (a UTC day, or one data
partition: ``monitoring.period``) against production's training window, as asset metadata
(plotted over partitions), with two checks: ``live_drift`` (inputs or predictions moved) and
``production_decay`` (production's metric on labels that landed for that period vs its holdout
metric; a failure can request a retrain, see ``decay_retrain_sensor``).
"""

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dagster as dg

from mlplatform.defs.monitoring_periods import (
    monitoring_partitions,
    period_before,
    period_days,
    schedule_cron,
)
from mlplatform.defs.partitions import KEY_FORMAT, cutoff_partitions, data_partitions
from mlplatform.prediction_log import write_monitoring_summary
from mlplatform.resources.ledger import LedgerResource
from mlplatform.resources.store import ArtifactStore
from mlplatform.spec import ProjectSpec, period_start

if TYPE_CHECKING:
    import pandas as pd

    from mlplatform.bundles.format import Bundle

LIVE_DRIFT = "live_drift"
PRODUCTION_DECAY = "production_decay"
PERIOD_WORDS = {"daily": "UTC day", "partition": "data partition"}


def monitoring_asset(spec: ProjectSpec) -> dg.AssetsDefinition:
    key = dg.AssetKey([spec.name, "monitoring"])
    days = monitoring_partitions(spec)
    decay = spec.monitoring.decay

    @dg.asset(
        key=key,
        partitions_def=days,
        check_specs=[
            dg.AssetCheckSpec(
                LIVE_DRIFT,
                asset=key,
                blocking=False,
                partitions_def=days,
                description="Logged inputs vs production's training window (PSI > "
                f"{spec.drift.psi_threshold}, share change > {spec.drift.share_threshold}, "
                f"missing-share change > {spec.drift.missing_threshold}) or predictions vs its "
                "predictions on that window.",
            ),
            dg.AssetCheckSpec(
                PRODUCTION_DECAY,
                asset=key,
                blocking=decay.severity == "error",
                partitions_def=days,
                description=f"Production's primary metric on the labels landed for the day is "
                f"worse than on its holdout by more than {decay.threshold}"
                + (" (requests a retrain)" if decay.retrain else ""),
            ),
        ],
        group_name=spec.name,
        kinds={"pandas", "parquet"},
        description=f"One {PERIOD_WORDS[spec.monitoring.period]} of the prediction log: input "
        "drift and prediction shift vs production's training window, traffic and latency, "
        "decay once labels land.",
    )
    def monitoring(
        context: dg.AssetExecutionContext, store: ArtifactStore, ledger: LedgerResource
    ) -> Iterator[object]:
        from mlplatform.steps import monitoring as steps

        day, end = period_days(spec, context.partition_key)
        log = steps.read_days(store.prediction_log, spec.name, day, end)
        bundle = _bundle(spec, store, ledger, log)
        metadata: dict[str, Any] = {**steps.traffic(log), "bundle_id": bundle_id_of(bundle)}
        drift = _live_drift(spec, store, bundle, log, (day, end), metadata)
        decay = _decay(spec, store, bundle, day)
        summary = {**day_summary(day, metadata, drift, decay), **_shadow_live(spec, store, day)}
        if spec.monitoring.period == "partition":
            summary["end"] = end.isoformat()
        write_monitoring_summary(Path(store.home), spec.name, day, summary)
        yield dg.MaterializeResult(metadata=metadata)
        yield drift
        yield decay

    return monitoring


def day_summary(
    day: dt.date, metadata: dict[str, Any], drift: dg.AssetCheckResult, decay: dg.AssetCheckResult
) -> dict[str, Any]:
    """What the review page's "since promotion" panel shows of one day (serving reads it)."""

    def value(found: dg.AssetCheckResult, key: str) -> Any:
        got = (found.metadata or {}).get(key)
        return getattr(got, "value", got)

    measured = value(decay, "live") is not None
    return {
        "day": day.isoformat(),
        "requests": metadata.get("requests", 0),
        "rows": metadata.get("rows", 0),
        "drifted": value(drift, "drifted"),
        "drift": drift.description,
        "decay_passed": decay.passed if measured else None,
        "decay_metric": value(decay, "metric"),
        "decay_live": value(decay, "live"),
        "decay_holdout": value(decay, "holdout"),
        "decay": decay.description,
    }


def _shadow_live(spec: ProjectSpec, store: ArtifactStore, day: dt.date) -> dict[str, Any]:
    """The shadow candidate's primary metric on the day's labels, when both exist (for the
    review page; an unusable shadow bundle is left out, never fails the run)."""
    from mlplatform.bundles.format import BundleError, load
    from mlplatform.shadow import read_shadow
    from mlplatform.steps import monitoring as steps

    attached = read_shadow(Path(store.home), spec.name)
    frame = labelled(spec, store, day) if attached is not None else None
    if attached is None or frame is None or frame.empty:
        return {}
    try:
        found = steps.decay(load(store.bundles_dir / attached.bundle_id), frame, spec)
    except (BundleError, OSError, KeyError, ValueError) as exc:
        return {"shadow_bundle_id": attached.bundle_id, "shadow_error": str(exc)[:300]}
    return {"shadow_bundle_id": attached.bundle_id, "shadow_live": round(found.live, 4)}


def bundle_id_of(bundle: "Bundle | None") -> str:
    return bundle.bundle_id if bundle is not None else "none"


def _bundle(
    spec: ProjectSpec, store: ArtifactStore, ledger: LedgerResource, log: "pd.DataFrame"
) -> "Bundle | None":
    """The bundle that answered most of the day's logged rows, else production now."""
    from mlplatform.bundles.format import BundleError, load
    from mlplatform.steps.monitoring import main_bundle

    if not log.empty:
        bundle_id: str | None = main_bundle(log)
    else:
        head = ledger.ledger.production(spec.name)
        bundle_id = head.to_bundle if head is not None else None
    if bundle_id is None:
        return None
    try:
        return load(store.bundles_dir / bundle_id)
    except (BundleError, OSError) as exc:
        raise dg.Failure(
            f"{spec.name}/monitoring: bundle {bundle_id} cannot be loaded ({exc}); restore "
            f"{store.bundles_dir / bundle_id} from the MLflow registry"
        ) from exc


def _reference(spec: ProjectSpec, store: ArtifactStore, bundle: "Bundle") -> "pd.DataFrame":
    """The features of the bundle's training window (its manifest's partition keys)."""
    from mlplatform.steps import split

    keys = list(bundle.manifest.get("training_manifest", {}).get("partitions", []))
    found = store.read_partitions(dg.AssetKey([spec.name, "features"]), keys)
    if not found:
        raise dg.Failure(
            f"{spec.name}/monitoring: none of the training window partitions of bundle "
            f"{bundle.bundle_id[:12]} ({', '.join(keys) or 'none listed'}) is stored; "
            f"materialize {spec.name}/features for them"
        )
    return split.training_frame(found)


def _live_drift(
    spec: ProjectSpec,
    store: ArtifactStore,
    bundle: "Bundle | None",
    log: "pd.DataFrame",
    period: tuple[dt.date, dt.date],
    metadata: dict[str, Any],
) -> dg.AssetCheckResult:
    """Drift and prediction shift of the period's log (values are added to ``metadata``)."""
    from mlplatform.steps import monitoring as steps

    if log.empty or bundle is None:
        return dg.AssetCheckResult(
            check_name=LIVE_DRIFT, passed=True, description="nothing logged in this period"
        )
    reference = _reference(spec, store, bundle)
    logged = steps.logged_features(spec, log)
    live = steps.live_features(log, spec)
    drifts, skipped = steps.live_drift(reference, live, spec, logged, period)
    shift = steps.prediction_shift(bundle, reference, log, spec)
    found = [f"{d.feature}: {d.detail}" for d in drifts if d.drifted]
    if shift.shifted:
        found.append(f"predictions: {shift.detail}")
    metadata.update(
        {
            "drifted": len(found),
            f"prediction_{shift.kind}": round(shift.value, 4),
            "not_compared": ", ".join(skipped) or "none",
            **{f"{d.kind}/{d.feature}": round(d.value, 4) for d in drifts},
        }
    )
    shares = steps.class_shares(log)
    if shares:
        metadata["predicted_shares"] = dg.MetadataValue.json(shares)
    return dg.AssetCheckResult(
        check_name=LIVE_DRIFT,
        passed=not found,
        severity=dg.AssetCheckSeverity.WARN,
        description="; ".join(found) or "no drift",
        metadata={"drifted": len(found), "rows": len(log), "bundle_id": bundle.bundle_id},
    )


def labelled(spec: ProjectSpec, store: ArtifactStore, day: dt.date) -> "pd.DataFrame | None":
    """Features with labels of the data partition holding ``day``: the stored ``features``
    partition, else its landing file read like ``raw`` and ``features`` do; None before it
    lands."""
    from mlplatform.steps import features, ingest

    key = period_start(day, spec.partitions.granularity, spec.partitions.week_starts_on).strftime(
        KEY_FORMAT
    )
    if key not in data_partitions(spec).get_partition_keys():
        return None
    stored = store.read_partitions(dg.AssetKey([spec.name, "features"]), [key])
    if key in stored:
        return stored[key]
    path = spec.landing_file(Path(store.home), key)
    if not path.exists():
        return None
    frame, _ = ingest.read_landing(path, spec)
    typed, _ = ingest.parse_partition(frame, spec, path)
    return features.build_features(typed, spec)


def _decay(
    spec: ProjectSpec, store: ArtifactStore, bundle: "Bundle | None", day: dt.date
) -> dg.AssetCheckResult:
    from mlplatform.steps import monitoring as steps

    rules = spec.monitoring.decay
    severity = (
        dg.AssetCheckSeverity.ERROR if rules.severity == "error" else dg.AssetCheckSeverity.WARN
    )
    frame = labelled(spec, store, day) if bundle is not None else None
    if bundle is None or frame is None or frame.empty:
        why = "no production bundle" if bundle is None else "no labels landed for this day yet"
        return dg.AssetCheckResult(check_name=PRODUCTION_DECAY, passed=True, description=why)
    found = steps.decay(bundle, frame, spec)
    return dg.AssetCheckResult(
        check_name=PRODUCTION_DECAY,
        passed=not found.decayed,
        severity=severity,
        description=found.describe(),
        metadata={
            "metric": found.metric,
            "live": round(found.live, 4),
            "holdout": round(found.holdout, 4),
            "drop": round(found.drop, 4),
            "labelled_rows": found.rows,
            "bundle_id": bundle.bundle_id,
            "retrain": rules.retrain,
        },
    )


def monitoring_schedule(spec: ProjectSpec) -> dg.ScheduleDefinition:
    """Shortly after midnight UTC, monitor the day (or data partition) that just ended."""
    key = dg.AssetKey([spec.name, "monitoring"])

    @dg.schedule(
        name=f"{spec.name}__monitoring",
        cron_schedule=schedule_cron(spec),
        execution_timezone="UTC",
        target=dg.AssetSelection.assets(key),
        default_status=(
            dg.DefaultScheduleStatus.RUNNING
            if spec.automation.enabled and spec.monitoring.log.rate > 0
            else dg.DefaultScheduleStatus.STOPPED
        ),
        description=f"Monitors the prediction log of {spec.name} of the period that just "
        "ended (UTC).",
    )
    def monitor_yesterday(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
        key = period_before(spec, context.scheduled_execution_time or dt.datetime.now(dt.UTC))
        return dg.RunRequest(
            run_key=f"monitoring-{key}",
            partition_key=key,
            tags={"mlplatform/trigger": "schedule"},
        )

    return monitor_yesterday


def decay_sensor(spec: ProjectSpec, targets: list[dg.AssetKey]) -> dg.SensorDefinition:
    """A retrain of the newest cutoff whose holdout landed, once per failed
    ``production_decay`` evaluation (``monitoring.decay.retrain``); evaluations from before
    its first tick request nothing."""
    p = spec.name
    check = dg.AssetCheckKey(dg.AssetKey([p, "monitoring"]), PRODUCTION_DECAY)
    features = dg.AssetKey([p, "features"])
    on = spec.automation.enabled and spec.monitoring.decay.retrain

    @dg.sensor(
        name=f"{p}__production_decay",
        minimum_interval_seconds=max(30, spec.automation.sensor_interval_seconds),
        target=dg.AssetSelection.assets(*targets),
        default_status=dg.DefaultSensorStatus.RUNNING if on else dg.DefaultSensorStatus.STOPPED,
        description=f"Retrains {p} when production_decay fails (monitoring.decay.retrain).",
    )
    def retrain_on_decay(context: dg.SensorEvaluationContext) -> dg.RunRequest | dg.SkipReason:
        from mlplatform.defs.dagster_internals import AssetCheckExecutionRecordStatus as Status

        storage = context.instance.event_log_storage
        records = storage.get_asset_check_execution_history(check, limit=50)
        newest = max((r.id for r in records), default=0)
        if context.cursor is None:
            context.update_cursor(str(newest))
            return dg.SkipReason("first tick: earlier evaluations request nothing")
        failed = [r for r in records if r.id > int(context.cursor) and r.status == Status.FAILED]
        context.update_cursor(str(max(newest, int(context.cursor))))
        if not failed:
            return dg.SkipReason(f"{p}: no new production_decay failure")
        landed = context.instance.get_materialized_partitions(features)
        cutoffs = [k for k in cutoff_partitions(spec).get_partition_keys() if k in landed]
        if not cutoffs:
            return dg.SkipReason(f"{p}: no cutoff has its holdout partition yet")
        found = failed[0]
        return dg.RunRequest(
            run_key=f"production_decay-{found.id}",
            partition_key=cutoffs[-1],
            asset_selection=targets,
            tags={
                "mlplatform/trigger": "production_decay",
                "mlplatform/decay_day": str(found.partition or ""),
            },
        )

    return retrain_on_decay
