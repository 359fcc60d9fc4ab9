"""``<project>/monitoring`` on real prediction logs (written by serving's log writer): injected
drift is flagged and an unchanged log is not; labels that land with a shifted relationship
trip ``production_decay``."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import shutil
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from mlplatform.bundles.format import load
from mlplatform.defs.build import resources, train_targets
from mlplatform.defs.monitoring import (
    LIVE_DRIFT,
    PRODUCTION_DECAY,
    labelled,
    monitoring_asset,
    monitoring_schedule,
)
from mlplatform.defs.monitoring_periods import monitoring_partitions
from mlplatform.ledger import Ledger
from mlplatform.prediction_log import monitoring_summary_dir
from mlplatform.serving.log_writer import Logged, PredictionLog
from mlplatform.serving.predict import predict_answer
from mlplatform.shadow import attach_shadow
from mlplatform.spec import ProjectSpec
from mlplatform.steps import ingest
from mlplatform.steps import monitoring as steps
from mlplatform_tests.object_store import ObjectStore, environment
from mlplatform_tests.projects import Trained

pytestmark = pytest.mark.dagster


@pytest.fixture
def live(two_bundles: Trained) -> Trained:
    """The newer bundle is production (its training window: the 2nd to 4th month)."""
    t = two_bundles
    ledger = Ledger(t.project.settings.ledger)
    try:
        ledger.promote(t.project.spec.name, t.bundles[1], "ci", "live", expected_from=None)
    finally:
        ledger.dispose()
    return t


def landing_rows(t: Trained, index: int) -> list[dict[str, Any]]:
    """The feature columns of one landing file's rows, values as they land (strings)."""
    spec = t.project.spec
    frame = ingest.read_landing_file(t.project.files[index], spec)
    rows = frame[spec.feature_columns].replace({np.nan: None}).to_dict("records")
    return [{k: v for k, v in r.items() if v is not None} for r in rows]


def write_log(t: Trained, day: dt.date, rows: list[dict[str, Any]], per_request: int = 5) -> None:
    """Predict ``rows`` with production and log them through serving's own writer, as if they
    were served on ``day``."""
    spec, bundle_id = t.project.spec, t.bundles[1]
    bundle = load(t.project.settings.bundles_dir / bundle_id)
    writer = PredictionLog({spec.name: spec}, t.project.settings.prediction_log)
    at = dt.datetime.combine(day, dt.time(12), dt.UTC).timestamp()
    for i in range(0, len(rows), per_request):
        chunk = rows[i : i + per_request]
        answer = predict_answer(bundle_id, bundle.predict_rows(chunk))
        body = json.dumps({"rows": chunk}).encode()
        assert writer.offer(Logged(spec.name, at + i, 0.002, body, answer))
    assert writer.flush() == len(rows)
    assert t.project.settings.prediction_log.day_files(spec.name, day)


def monitor(t: Trained, day: dt.date, spec: ProjectSpec | None = None) -> dg.ExecuteInProcessResult:
    spec = spec or t.project.spec
    return dg.materialize(
        [monitoring_asset(spec)],
        partition_key=day.isoformat(),
        resources=resources(t.project.settings, [spec]),
        instance=t.instance,
        raise_on_error=False,
    )


def checks(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    assert result.success, result.all_events
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def metadata(result: dg.ExecuteInProcessResult) -> dict[str, Any]:
    (mat,) = result.get_asset_materialization_events()
    return {k: v.value for k, v in mat.materialization.metadata.items()}


def summary(t: Trained, day: dt.date) -> dict[str, Any]:
    path = monitoring_summary_dir(t.project.home, t.project.spec.name) / f"{day.isoformat()}.json"
    return dict(json.loads(path.read_text()))


def test_unchanged_log_is_not_flagged_and_injected_drift_is(live: Trained) -> None:
    rows = landing_rows(live, 2)  # a month of production's own training window
    calm, drifted = dt.date(2026, 6, 1), dt.date(2026, 6, 2)  # no labels land for these days
    write_log(live, calm, rows)
    shifted = [
        {**r, "monthly_charges": str(float(r.get("monthly_charges") or 50) * 3), "plan": "premium"}
        for r in rows
    ]
    write_log(live, drifted, shifted)

    result = monitor(live, calm)
    found = checks(result)
    assert found[LIVE_DRIFT].passed, found[LIVE_DRIFT].description
    assert found[PRODUCTION_DECAY].passed
    meta = metadata(result)
    assert meta["requests"] == len(range(0, len(rows), 5)) and meta["rows"] == len(rows)
    assert meta["drifted"] == 0 and meta["bundle_id"] == live.bundles[1]
    assert meta["latency_p99_ms"] == pytest.approx(2.0)

    result = monitor(live, drifted)
    found = checks(result)
    assert not found[LIVE_DRIFT].passed
    assert "monthly_charges" in found[LIVE_DRIFT].description
    assert "plan" in found[LIVE_DRIFT].description
    meta = metadata(result)
    assert meta["psi/monthly_charges"] > 0.25 and meta["share/plan"] > 0.15
    # the day's summary for the review page's "since promotion" panel (serving reads files)
    calm_day, drift_day = (summary(live, day) for day in (calm, drifted))
    assert (calm_day["drifted"], calm_day["decay_passed"]) == (0, None)
    assert drift_day["drifted"] >= 2 and "monthly_charges" in drift_day["drift"]
    assert drift_day["rows"] == len(rows)


def test_the_monitoring_asset_reads_a_log_in_object_storage(
    live: Trained, object_store: ObjectStore
) -> None:
    """Serving and the run that monitors share the log through a bucket, not a disk."""
    object_store.create_bucket("monitored")
    settings = live.project.settings.model_copy(update={"prediction_log_url": "s3://monitored/l"})
    remote = dataclasses.replace(live, project=dataclasses.replace(live.project, settings=settings))
    rows = landing_rows(live, 2)
    day = dt.date(2026, 6, 3)
    with environment(object_store.env):
        write_log(remote, day, rows)
        result = monitor(remote, day)
    meta = metadata(result)
    assert meta["rows"] == len(rows) and meta["bundle_id"] == live.bundles[1]
    assert checks(result)[LIVE_DRIFT].passed
    assert object_store.keys(f"monitored/l/{live.project.spec.name}/{day.isoformat()}")
    assert not (live.project.home / "prediction_log").exists()


def test_labels_with_a_shifted_relationship_trip_production_decay(live: Trained) -> None:
    spec, home = live.project.spec, live.project.home
    holdout = pd.Timestamp(live.project.files[4].stem).date()  # production's own holdout month
    rows = landing_rows(live, 4)
    write_log(live, holdout, rows)
    found = checks(monitor(live, holdout))
    assert found[PRODUCTION_DECAY].passed, found[PRODUCTION_DECAY].description
    assert found[PRODUCTION_DECAY].metadata["drop"].value == pytest.approx(0.0, abs=1e-6)

    sensor = live.defs.get_sensor_def(f"{spec.name}__production_decay")
    context = dg.build_sensor_context(instance=live.instance, definitions=live.defs)
    assert isinstance(sensor(context), dg.SkipReason)  # first tick: the pass before it is old
    assert isinstance(sensor(context), dg.SkipReason)  # nothing new

    # the next month lands with the relationship reversed: churners stay, stayers churn
    later = (pd.Timestamp(holdout) + pd.DateOffset(months=1)).date()
    landed = pd.read_csv(live.project.files[4], dtype=str, keep_default_na=False)
    landed["churned"] = landed["churned"].map({"yes": "no", "no": "yes"})
    landed.to_csv(spec.landing_file(home, later.isoformat()), index=False)
    day = later + dt.timedelta(days=3)
    attach_shadow(home, spec.name, live.bundles[0], "alice")  # the other bundle, in shadow
    found = checks(monitor(live, day))  # nothing logged that day: production from the ledger
    decay = found[PRODUCTION_DECAY]
    assert not decay.passed
    assert decay.severity == dg.AssetCheckSeverity.WARN
    assert decay.metadata["drop"].value > spec.monitoring.decay.threshold
    assert "worse by" in (decay.description or "")
    decayed = summary(live, day)
    store = resources(live.project.settings, [spec])["store"]
    shadow = load(live.project.settings.bundles_dir / live.bundles[0])
    other = steps.decay(shadow, labelled(spec, store, day), spec)
    assert decayed["shadow_bundle_id"] == live.bundles[0]
    assert decayed["shadow_live"] == round(other.live, 4)
    assert decayed["decay_passed"] is False and decayed["decay"] == decay.description
    assert decayed["decay_live"] == decay.metadata["live"].value

    request = sensor(context)  # the failure requests one retrain of the newest landed cutoff
    assert isinstance(request, dg.RunRequest)
    assert request.partition_key == live.project.files[4].stem
    assert request.tags["mlplatform/trigger"] == "production_decay"
    assert set(request.asset_selection or []) == set(train_targets(spec))
    assert isinstance(sensor(context), dg.SkipReason)  # once per failed evaluation


def test_labels_landing_after_a_period_was_monitored_monitor_it_again(live: Trained) -> None:
    """A day monitored before its month's labels landed had no decay to check: once that
    month's features are materialized, the sensor requests that day again, once."""
    from mlplatform.defs.build import data_job_name

    spec, home = live.project.spec, live.project.home
    sensor = live.defs.get_sensor_def(f"{spec.name}__labels_landed")
    context = dg.build_sensor_context(instance=live.instance, definitions=live.defs)
    assert isinstance(sensor(context), dg.SkipReason)  # first tick: earlier labels are old
    later = (pd.Timestamp(live.project.files[4].stem) + pd.DateOffset(months=1)).date()
    early = later + dt.timedelta(days=2)  # the month's only monitored day
    before = checks(monitor(live, early))[PRODUCTION_DECAY]
    assert before.passed and "no labels landed" in (before.description or "")

    shutil.copy(live.project.files[4], spec.landing_file(home, later.isoformat()))
    data = live.defs.resolve_job_def(data_job_name(spec.name))
    assert data.execute_in_process(partition_key=later.isoformat(), instance=live.instance).success
    result = sensor(context)
    assert isinstance(result, dg.SensorResult) and result.run_requests is not None
    (request,) = result.run_requests  # the monitored day only, not the month's other days
    assert request.partition_key == early.isoformat()
    assert request.tags["mlplatform/trigger"] == "labels_landed"
    context.update_cursor(result.cursor)
    again = checks(monitor(live, early))[PRODUCTION_DECAY]  # what the requested run does
    assert again.metadata["labelled_rows"].value > 0, again.description
    assert isinstance(sensor(context), dg.SkipReason)  # once per landing


def test_monitoring_per_data_partition_covers_every_logged_day_of_the_partition(
    live: Trained,
) -> None:
    monthly = live.project.spec.model_copy(
        update={
            "monitoring": live.project.spec.monitoring.model_copy(update={"period": "partition"})
        }
    )
    keys = monitoring_partitions(monthly).get_partition_keys()
    assert "2026-06-01" in keys and "2026-06-03" not in keys  # the data's monthly keys
    rows = landing_rows(live, 2)
    shifted = [{**r, "plan": "premium"} for r in rows]
    write_log(live, dt.date(2026, 6, 3), rows)
    write_log(live, dt.date(2026, 6, 30), shifted)
    write_log(live, dt.date(2026, 7, 1), rows)  # the next partition
    result = monitor(live, dt.date(2026, 6, 1), monthly)
    meta = metadata(result)
    assert (meta["rows"], meta["requests"]) == (2 * len(rows), 2 * len(range(0, len(rows), 5)))
    assert not checks(result)[LIVE_DRIFT].passed  # half the month's requests were all premium
    month = summary(live, dt.date(2026, 6, 1))
    assert (month["day"], month["end"], month["rows"]) == (
        "2026-06-01",
        "2026-07-01",
        2 * len(rows),
    )

    schedule = monitoring_schedule(monthly)
    assert schedule.cron_schedule == "15 0 1 * *"
    when = dt.datetime(2026, 7, 1, 0, 15, tzinfo=dt.UTC)
    request = schedule(dg.build_schedule_context(scheduled_execution_time=when))
    assert isinstance(request, dg.RunRequest) and request.partition_key == "2026-06-01"
