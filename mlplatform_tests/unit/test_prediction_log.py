"""The prediction log's spec (privacy switch) and its writer: sampling, a bounded queue that
drops and counts, atomic daily files, losses counted rather than raised."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from mlplatform.prediction_log import LogStore
from mlplatform.serving.log_writer import Logged, PredictionLog
from mlplatform.spec import ProjectSpec, SpecError, load_spec
from mlplatform_tests.projects import example_dict

NOON = dt.datetime(2026, 3, 4, 12, tzinfo=dt.UTC).timestamp()


def store(tmp_path: Path) -> LogStore:
    return LogStore.under_home(tmp_path / "home")


def spec_with(tmp_path: Path, **log: object) -> ProjectSpec:
    data = {**example_dict(), "monitoring": {"log": log}}
    path = tmp_path / "churn.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_spec(path)


def request(n: int, at: float = NOON) -> Logged:
    rows = [{"plan": "basic", "tenure_months": i, "region": "north"} for i in range(n)]
    preds = [{"label": "no", "probabilities": {"no": 0.7, "yes": 0.3}} for _ in range(n)]
    answer = json.dumps({"bundle_id": "b1", "predictions": preds}).encode()
    return Logged("churn", at, 0.004, json.dumps({"rows": rows}).encode(), answer)


def test_the_privacy_switch_is_checked(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as info:
        spec_with(tmp_path, columns=["plan", "password"])
    assert ("monitoring.log.columns", "'password' is not among 'columns'") in info.value.problems
    with pytest.raises(SpecError) as info:
        spec_with(tmp_path, rate=1.5)
    assert any(loc == "monitoring.log.rate" for loc, _ in info.value.problems)
    spec = spec_with(tmp_path, columns=["plan"])
    assert spec.logged_columns == ["plan"]
    assert spec_with(tmp_path).logged_columns == spec.feature_columns  # default: features


def test_rate_zero_logs_nothing(tmp_path: Path) -> None:
    log = PredictionLog({"churn": spec_with(tmp_path, rate=0)}, store(tmp_path))
    assert not log.sampled("churn") and log.stats() == {}
    log.start()  # no writer thread for nothing to log
    log.stop()
    assert not (tmp_path / "home").exists()


def test_rate_samples_about_that_share(tmp_path: Path) -> None:
    log = PredictionLog({"churn": spec_with(tmp_path, rate=0.25)}, store(tmp_path))
    share = sum(log.sampled("churn") for _ in range(20_000)) / 20_000
    assert 0.22 < share < 0.28
    assert not log.sampled("unknown")


def test_a_full_queue_drops_and_counts(tmp_path: Path) -> None:
    spec = spec_with(tmp_path, queue_requests=2, columns=["plan"])
    log = PredictionLog({"churn": spec}, store(tmp_path))
    assert [log.offer(request(3)) for _ in range(4)] == [True, True, False, False]
    assert log.flush() == 6
    assert log.offer(request(1))  # room again after the flush
    assert log.flush() == 1
    st = log.stats()["churn"]
    assert (st.offered, st.dropped, st.written_requests, st.written_rows) == (5, 2, 3, 7)
    day = dt.date(2026, 3, 4)
    files = store(tmp_path).day_files("churn", day)
    folder = Path(store(tmp_path).day_folder("churn", day))
    assert len(files) == 2 and not [p for p in folder.iterdir() if p.name.startswith(".")]
    frame = pd.concat([pd.read_parquet(f) for f in files])
    assert sorted(c for c in frame.columns if c.startswith("input.")) == ["input.plan"]
    assert list(frame["input.plan"].unique()) == ["basic"]


def test_requests_go_to_their_utc_day(tmp_path: Path) -> None:
    log = PredictionLog({"churn": spec_with(tmp_path)}, store(tmp_path))
    log.offer(request(1, NOON))
    log.offer(request(2, NOON + 86_400))
    assert log.flush() == 3
    assert len(store(tmp_path).day_files("churn", dt.date(2026, 3, 4))) == 1
    assert len(store(tmp_path).day_files("churn", dt.date(2026, 3, 5))) == 1


def test_a_failed_write_is_counted_not_raised(tmp_path: Path) -> None:
    log = PredictionLog({"churn": spec_with(tmp_path)}, store(tmp_path))
    blocker = Path(store(tmp_path).day_folder("churn", dt.date(2026, 3, 4)))
    blocker.parent.mkdir(parents=True)
    blocker.write_text("not a folder")  # the day's folder cannot be made
    log.offer(request(2))
    log.offer(Logged("churn", NOON + 86_400, 0.001, b"{not json", b"{}"))
    assert log.flush() == 0
    st = log.stats()["churn"]
    assert (st.offered, st.written_requests, st.failed_requests) == (2, 0, 2)
