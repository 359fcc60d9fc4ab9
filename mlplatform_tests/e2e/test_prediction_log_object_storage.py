"""The prediction log in object storage (``MLPLATFORM_PREDICTION_LOG_URL=s3://...``) against a
real S3 server (SeaweedFS): serving's writer puts whole objects, the monitoring reader and the
since-promotion panel read them back, and an unreachable bucket stops ``mlplatform serve``
with one line."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mlplatform.prediction_log import LogLocationError
from mlplatform.serving.log_writer import PredictionLog
from mlplatform.serving.since_promotion import read_log, traffic
from mlplatform.settings import load_settings
from mlplatform.steps.monitoring import read_days
from mlplatform_tests.object_store import ObjectStore, environment
from mlplatform_tests.unit.test_prediction_log import request, spec_with

pytestmark = pytest.mark.e2e  # an S3 server (SeaweedFS) and a serving process


def test_the_writer_puts_objects_and_the_readers_read_them(
    object_store: ObjectStore, tmp_path: Path
) -> None:
    object_store.create_bucket("logs-a")
    now = dt.datetime.now(dt.UTC)
    today = now.date()
    with environment(object_store.env):
        settings = load_settings(home=tmp_path / "home", prediction_log_url="s3://logs-a/prod/")
        log = PredictionLog({"churn": spec_with(tmp_path)}, settings.prediction_log)
        log.check()
        assert log.offer(request(3, now.timestamp()))
        assert log.offer(request(2, now.timestamp() - 86_400))
        assert log.flush() == 5
        st = log.stats()["churn"]
        assert (st.written_requests, st.written_rows, st.failed_requests) == (2, 5, 0)

        keys = object_store.keys("logs-a/prod")
        yesterday = today - dt.timedelta(days=1)
        assert [k.rsplit("/", 1)[0] for k in keys] == [
            f"logs-a/prod/churn/{yesterday.isoformat()}",
            f"logs-a/prod/churn/{today.isoformat()}",
        ]
        assert all(k.endswith(".parquet") for k in keys)
        frame = read_days(settings.prediction_log, "churn", yesterday, today + dt.timedelta(1))
        assert len(frame) == 5 and set(frame["bundle_id"]) == {"b1"}
        assert sorted(frame["input.tenure_months"].unique()) == ["0", "1", "2"]
        since = now - dt.timedelta(hours=1)
        assert traffic(read_log(settings.prediction_log, "churn", since)).rows == 3
    assert not (tmp_path / "home" / "prediction_log").exists()  # nothing went to the disk


def test_a_missing_bucket_or_wrong_key_is_found_at_start(
    object_store: ObjectStore, tmp_path: Path
) -> None:
    with environment(object_store.env):
        settings = load_settings(home=tmp_path, prediction_log_url="s3://no-such-bucket/log")
        with pytest.raises(LogLocationError, match="bucket 'no-such-bucket' does not exist"):
            PredictionLog({"churn": spec_with(tmp_path)}, settings.prediction_log).check()
    object_store.create_bucket("logs-b")
    wrong_key = {**object_store.env, "AWS_SECRET_ACCESS_KEY": "not-the-secret"}
    with environment(wrong_key):
        settings = load_settings(home=tmp_path, prediction_log_url="s3://logs-b/log")
        with pytest.raises(LogLocationError, match=r"cannot reach it \(.*ACCESS_DENIED"):
            settings.prediction_log.check()
    wrong = {**object_store.env, "AWS_ENDPOINT_URL": "http://127.0.0.1:9"}  # nothing listens
    with environment(wrong):
        settings = load_settings(home=tmp_path, prediction_log_url="s3://logs-b/log")
        with pytest.raises(LogLocationError, match=r"cannot reach it .*AWS_ENDPOINT_URL"):
            settings.prediction_log.check()


def test_serve_refuses_to_start_on_a_missing_bucket(
    object_store: ObjectStore, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        **object_store.env,
        "MLPLATFORM_PREDICTION_LOG_URL": "s3://missing-bucket/log",
    }
    argv = [sys.executable, "-m", "mlplatform.cli", "serve", "--home", str(tmp_path / "h")]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr  # no traceback
    assert "cannot serve: prediction log s3://missing-bucket/log" in lines[0]
    assert "create it" in lines[0]
