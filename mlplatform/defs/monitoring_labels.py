"""Re-monitoring when labels land: a monitoring period that ran before its data partition's
landing file (its labels) arrived had no ``production_decay`` to check; once that partition's
``features`` is materialized, its newest monitored period is monitored again."""

import datetime as dt

import dagster as dg

from mlplatform.defs.monitoring_periods import granularity, monitoring_partitions
from mlplatform.spec import ProjectSpec, shift_periods

BATCH = 100  # features materializations read per tick at most


def monitored_in(spec: ProjectSpec, data_key: str, monitored: set[str]) -> str | None:
    """The newest monitored period inside data partition ``data_key`` (None if none)."""
    first = dt.date.fromisoformat(data_key)
    end = shift_periods(first, spec.partitions.granularity, 1) or dt.date.max
    if granularity(spec) != "daily":
        return data_key if data_key in monitored else None
    inside = [k for k in monitored if first <= dt.date.fromisoformat(k) < end]
    return max(inside, default=None)


def _last_monitored(instance: dg.DagsterInstance, key: dg.AssetKey, partition: str) -> int:
    """Storage id of the newest materialization of one monitoring partition (0: none)."""
    found = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, asset_partitions=[partition]), limit=1
    )
    return found.records[0].storage_id if found.records else 0


def labels_sensor(spec: ProjectSpec) -> dg.SensorDefinition:
    """One monitoring run per data partition whose labels landed after its newest monitored
    period ran; history before the sensor's first tick requests nothing."""
    p = spec.name
    features = dg.AssetKey([p, "features"])
    monitoring = dg.AssetKey([p, "monitoring"])
    on = spec.automation.enabled and spec.monitoring.log.rate > 0

    @dg.sensor(
        name=f"{p}__labels_landed",
        minimum_interval_seconds=max(30, spec.automation.sensor_interval_seconds),
        target=dg.AssetSelection.assets(monitoring),
        default_status=dg.DefaultSensorStatus.RUNNING if on else dg.DefaultSensorStatus.STOPPED,
        description=f"Monitors {p} again when labels land for a period monitored without "
        "them, so production_decay is checked.",
    )
    def monitor_on_labels(
        context: dg.SensorEvaluationContext,
    ) -> dg.SensorResult | dg.SkipReason:
        instance = context.instance
        if context.cursor is None:
            newest = instance.fetch_materializations(features, limit=1).records
            context.update_cursor(str(newest[0].storage_id if newest else 0))
            return dg.SkipReason("first tick: labels landed before it request nothing")
        landed = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=features, after_storage_id=int(context.cursor)),
            limit=BATCH,
            ascending=True,
        ).records
        if not landed:
            return dg.SkipReason(f"{p}: no new labels")
        valid = set(monitoring_partitions(spec).get_partition_keys())
        monitored = set(instance.get_materialized_partitions(monitoring)) & valid
        requests = {}
        for record in landed:
            key = monitored_in(spec, record.partition_key or "", monitored)
            if key is not None and _last_monitored(instance, monitoring, key) < record.storage_id:
                requests[key] = dg.RunRequest(
                    run_key=f"labels-{record.storage_id}",
                    partition_key=key,
                    tags={"mlplatform/trigger": "labels_landed"},
                )
        cursor = str(landed[-1].storage_id)
        if not requests:
            return dg.SensorResult(
                skip_reason=f"{p}: no period monitored before its labels", cursor=cursor
            )
        return dg.SensorResult(run_requests=list(requests.values()), cursor=cursor)

    return monitor_on_labels
