"""The prediction log of a real ``mlplatform serve`` process: what it records (and never), the
privacy switch, and honest counts under load (no response lost, drops counted)."""

from __future__ import annotations

import asyncio
import datetime as dt
import importlib
import shutil
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pandas as pd
import pytest
import yaml

from mlplatform.prediction_log import LogStore
from mlplatform.settings import load_settings
from mlplatform.steps.monitoring import read_days
from mlplatform_tests import waiting
from mlplatform_tests.object_store import ObjectStore, environment
from mlplatform_tests.serving import abuse
from mlplatform_tests.serving.builders import OTHER_PROJECT, PROJECT, Built
from mlplatform_tests.serving.servers import READER, READER_TOKEN, TOKENS, Env, make_env

pytestmark = pytest.mark.e2e  # runs `mlplatform serve` as a process
BENCH = Path(__file__).resolve().parents[2] / "bench"
LOGGED = ["tenure_months", "plan", "autopay"]


def with_log(built: Built, root: Path, **log: Any) -> Path:
    """A copy of the projects folder: ``shop`` logs ``log``, ``other`` logs nothing."""
    projects = root / "projects"
    shutil.copytree(built.projects_dir, projects)
    for name, options in ((PROJECT, log), (OTHER_PROJECT, {"rate": 0})):
        path = projects / f"{name}.yaml"
        data = yaml.safe_load(path.read_text())
        data["monitoring"] = {"log": options}
        path.write_text(yaml.safe_dump(data, sort_keys=False))
    return projects


def logged(env: Env, project: str = PROJECT) -> pd.DataFrame:
    root = Path(env.settings.prediction_log.project_folder(project))
    files = sorted(root.glob("*/*.parquet"))
    if not files:
        return pd.DataFrame()
    return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)


def health(url: str) -> dict[str, Any]:
    return httpx.get(f"{url}/healthz", timeout=10).json()["prediction_log"][PROJECT]


def test_serve_logs_inputs_as_received_predictions_bundle_time_latency(
    built: Built, tmp_path: Path
) -> None:
    env = make_env(built, tmp_path, **TOKENS)
    projects = with_log(built, tmp_path, rate=1.0, columns=LOGGED, flush_seconds=0.2)
    a = env.ids["a"]
    small = [{"tenure_months": 3, "plan": "basic", "autopay": True, "region": "north"}]
    large = [{**r, "tenure_months": str(r.get("tenure_months"))} for r in env.rows[:100]]
    started = dt.datetime.now(dt.UTC)
    with abuse.serve_process(env.settings.home, projects, TOKENS, tmp_path / "serve.log") as url:
        with httpx.Client(base_url=url, headers=READER, timeout=30) as http:
            answers = [
                http.post(f"/v1/projects/{PROJECT}/predict", json={"rows": small}),  # fast path
                http.post(f"/v1/projects/{PROJECT}/predict", json={"rows": large}),  # route
                http.post(f"/v1/projects/{PROJECT}/predict", json={"rows": [{"nope": 1}]}),
                http.post(f"/v1/projects/{OTHER_PROJECT}/predict", json={"rows": small}),
            ]
        assert [r.status_code for r in answers] == [200, 200, 422, 404]  # other: no production yet
        waiting.wait_for("the log to be written", lambda: health(url)["written_rows"] == 101, 30)
        assert health(url) == {
            "offered": 2,
            "dropped": 0,
            "written_requests": 2,
            "written_rows": 101,
            "failed_requests": 0,
        }
        metrics = httpx.get(f"{url}/metrics", timeout=10).text
        label = f'{{project="{PROJECT}"}}'
        assert f"mlplatform_prediction_log_written_rows_total{label} 101.0" in metrics
        assert f"mlplatform_prediction_log_dropped_total{label} 0.0" in metrics

    log = logged(env)
    assert len(log) == 101 and set(log["bundle_id"]) == {a}
    first = log[log["request"] == log.loc[log["row"] == 0, "request"].iloc[0]]
    inputs = sorted(c for c in log.columns if c.startswith("input."))
    assert inputs == sorted(f"input.{c}" for c in LOGGED)  # region is not logged
    one = log[log["input.tenure_months"] == "3"].iloc[0]  # the number 3 as JSON text
    assert (one["input.plan"], one["input.autopay"]) == ("basic", "true")
    big = log[log["request"] != one["request"]].sort_values("row")
    assert list(big["input.tenure_months"]) == [r["tenure_months"] for r in large]
    assert list(big["input.plan"]) == [r.get("plan") for r in large]
    served = answers[1].json()["predictions"]
    assert list(big["label"]) == [p["label"] for p in served]
    assert list(big["proba.yes"]) == pytest.approx([p["probabilities"]["yes"] for p in served])
    assert (log["latency_ms"] > 0).all() and len(first) >= 1
    assert (log["time"] >= started - dt.timedelta(seconds=1)).all()
    assert not Path(env.settings.prediction_log.project_folder(OTHER_PROJECT)).exists()
    everything = b"".join(f.read_bytes() for f in env.settings.home.rglob("*.parquet"))
    assert READER_TOKEN.encode() not in everything and b"Bearer" not in everything


def bench_serving() -> ModuleType:
    """``bench/serving.py``: its closed-loop HTTP load generator is the serving benches' tool."""
    sys.path.insert(0, str(BENCH))
    try:
        return importlib.import_module("serving")
    finally:
        sys.path.remove(str(BENCH))


def predict_load(url: str, rows: list[dict[str, Any]]) -> Any:
    """5 s of 16 connections predicting ``rows`` one at a time (the serving bench's driver)."""
    bench = bench_serving()
    port = int(url.rsplit(":", 1)[1])
    headers = {"Authorization": f"Bearer {READER_TOKEN}"}
    path = f"/v1/projects/{PROJECT}/predict"
    requests = [bench.http_request(path, port, bench.ours_body(row), headers) for row in rows]
    return asyncio.run(bench.drive(port, requests, 16, seconds=5.0))


def settled(url: str) -> bool:
    """Every sample offered to the log is written, dropped or failed: none is queued."""
    h = health(url)
    return h["offered"] == h["written_requests"] + h["dropped"] + h["failed_requests"]


def test_logging_under_load_loses_no_response_and_counts_every_drop(
    built: Built, tmp_path: Path
) -> None:
    env = make_env(built, tmp_path, **TOKENS)
    # a one-request queue flushed twice a second: most samples must be dropped, and said so
    projects = with_log(built, tmp_path, rate=1.0, queue_requests=1, flush_seconds=0.5)
    with abuse.serve_process(env.settings.home, projects, TOKENS, tmp_path / "serve.log") as url:
        load = predict_load(url, env.rows[:200])
        assert load.errors == 0, load.first_error
        assert load.ok > 100
        waiting.wait_for("every sample to be written or dropped", lambda: settled(url), 30)
        counts = health(url)
    assert counts["offered"] == load.ok  # every answered request was sampled (rate 1)
    assert counts["dropped"] > 0 and counts["failed_requests"] == 0
    assert counts["written_requests"] == counts["written_rows"] == load.ok - counts["dropped"]
    assert len(logged(env)) == counts["written_rows"]  # the files hold exactly what was counted


def test_large_batches_under_load_are_all_written(built: Built, tmp_path: Path) -> None:
    env = make_env(built, tmp_path, **TOKENS)
    projects = with_log(built, tmp_path, rate=1.0, flush_seconds=2)  # batches of > 200 requests
    with abuse.serve_process(env.settings.home, projects, TOKENS, tmp_path / "serve.log") as url:
        load = predict_load(url, env.rows[:200])
        assert load.errors == 0, load.first_error
        waiting.wait_for("the log to be written", lambda: health(url)["written_rows"] > 0, 30)
    log = logged(env)  # the server stopped: what was still queued is written too
    assert len(log) == load.ok > 400
    assert log["request"].is_unique and set(log["bundle_id"]) == {env.ids["a"]}
    sent = {(r.get("tenure_months"), r.get("plan")) for r in env.rows[:200]}
    assert set(zip(log["input.tenure_months"], log["input.plan"], strict=True)) <= sent


def test_under_load_the_log_goes_to_object_storage(
    built: Built, tmp_path: Path, object_store: ObjectStore
) -> None:
    """``MLPLATFORM_PREDICTION_LOG_URL=s3://...``: the writer's thread and its worker process
    put every logged request into the bucket, nothing on the serving machine's disk."""
    env = make_env(built, tmp_path, **TOKENS)
    projects = with_log(built, tmp_path, rate=1.0, flush_seconds=2)
    object_store.create_bucket("serving-log")
    url_env = {**object_store.env, "MLPLATFORM_PREDICTION_LOG_URL": "s3://serving-log/prod"}
    with environment(url_env):
        with abuse.serve_process(env.settings.home, projects, TOKENS, tmp_path / "s.log") as url:
            load = predict_load(url, env.rows[:200])
            assert load.errors == 0, load.first_error
            waiting.wait_for("the log to be written", lambda: health(url)["written_rows"] > 0, 30)
        store = load_settings(home=env.settings.home).prediction_log
        today = dt.datetime.now(dt.UTC).date()
        log = read_days(store, PROJECT, today - dt.timedelta(days=1), today + dt.timedelta(1))
    assert len(log) == load.ok > 200
    assert log["request"].is_unique and set(log["bundle_id"]) == {env.ids["a"]}
    assert object_store.keys(f"serving-log/prod/{PROJECT}")
    assert not Path(LogStore.under_home(env.settings.home).project_folder(PROJECT)).exists()
