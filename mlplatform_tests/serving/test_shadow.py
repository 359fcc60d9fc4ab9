"""A shadow candidate in a real ``mlplatform serve`` process: attached by an approver, it
predicts logged requests beside production; its predictions are logged, never returned."""

from __future__ import annotations

import datetime as dt
import json
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import httpx
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from mlplatform.bundles.format import load
from mlplatform.prediction_log import LogStore, log_url
from mlplatform.serving.app import create_app
from mlplatform.serving.log_batches import Batch, write_batch
from mlplatform.serving.predict import Compiled, predict_answer
from mlplatform.shadow import attach_shadow, read_shadow
from mlplatform_tests import waiting
from mlplatform_tests.serving import abuse
from mlplatform_tests.serving.builders import PROJECT, Built
from mlplatform_tests.serving.servers import (
    APPROVER,
    APPROVER_TOKEN,
    POLL,
    READER,
    TOKENS,
    Env,
    make_env,
)
from mlplatform_tests.serving.test_identities import cli
from mlplatform_tests.serving.test_prediction_log import LOGGED, health, logged, with_log

pytestmark = pytest.mark.e2e  # runs `mlplatform serve` as a process
DAY = dt.date(1970, 1, 1)  # the day of time 0.0
APPROVER_ENV = {"MLPLATFORM_TOKEN": APPROVER_TOKEN}


def test_shadow_predictions_are_logged_and_never_returned(built: Built, tmp_path: Path) -> None:
    env = make_env(built, tmp_path, **TOKENS)
    projects = with_log(built, tmp_path, rate=1.0, columns=LOGGED, flush_seconds=0.2)
    a, c = env.ids["a"], env.ids["c"]
    bodies = [
        {"rows": [{"tenure_months": 3, "plan": "basic", "autopay": True}]},  # fast path
        {"rows": [{**r, "tenure_months": str(r.get("tenure_months"))} for r in env.rows[:100]]},
    ]
    log_file = tmp_path / "serve.log"
    with (
        abuse.serve_process(env.settings.home, projects, TOKENS, log_file) as url,
        httpx.Client(base_url=url, timeout=30) as http,
    ):
        attach = f"/v1/projects/{PROJECT}/candidates/{c}/shadow"
        assert http.post(attach, headers=READER).status_code == 403
        unknown = f"/v1/projects/{PROJECT}/candidates/{'0' * 64}/shadow"
        assert http.post(unknown, headers=APPROVER).status_code == 404
        by_cli = cli(env, "shadow", PROJECT, c[:12], MLPLATFORM_SERVE_URL=url, **APPROVER_ENV)
        assert by_cli.returncode == 0, by_cli.stderr
        assert f"bundle {c[:12]} in shadow (attached by alice)" in by_cli.stdout
        attached = http.get(f"/v1/projects/{PROJECT}/shadow", headers=READER).json()
        assert (attached["bundle_id"], attached["actor"], attached["error"]) == (c, "alice", None)
        answers = [
            http.post(f"/v1/projects/{PROJECT}/predict", json=b, headers=READER) for b in bodies
        ]
        assert [r.status_code for r in answers] == [200, 200]
        for r in answers:
            assert set(r.json()) == {"bundle_id", "predictions"}
            assert r.json()["bundle_id"] == a and c not in r.text
        waiting.wait_for("the log to be written", lambda: health(url)["written_rows"] == 101, 30)
        counted = http.get("/healthz").json()["shadow"][PROJECT]
        assert counted == {
            **NO_SHADOW,
            "bundle_id": c,
            "predicted_requests": 2,
            "predicted_rows": 101,
        }
        panel = http.get(f"/v1/projects/{PROJECT}/since-promotion", headers=READER).json()
        assert http.delete(f"/v1/projects/{PROJECT}/shadow", headers=READER).status_code == 403
    assert read_shadow(env.settings.home, PROJECT) is not None
    assert cli(env, "shadow", PROJECT).returncode == 1  # neither a bundle nor --off
    on_production = cli(env, "shadow", PROJECT, a[:12])  # on the home, as the system account
    assert on_production.returncode == 1 and "production already" in on_production.stderr
    detached = cli(env, "shadow", PROJECT, "--off")  # on the home, as the system account
    assert detached.returncode == 0 and "no shadow bundle" in detached.stdout
    assert read_shadow(env.settings.home, PROJECT) is None
    frame = logged(env)
    assert len(frame) == 101
    assert set(frame["bundle_id"]) == {a} and set(frame["shadow_bundle_id"]) == {c}
    returned = [p["label"] for r in answers for p in r.json()["predictions"]]
    validator, predictor = Compiled().of(load(env.bundle_dir("c")))
    expected = [
        p["label"]
        for b in bodies
        for p in predictor.predict_rows(validator.rows(json.dumps(b).encode()))
    ]
    frame = frame.sort_values(["request", "row"]).reset_index(drop=True)
    by_size = sorted(frame.groupby("request", sort=False), key=lambda g: len(g[1]))
    assert [lbl for _, g in by_size for lbl in g["label"]] == returned
    assert [lbl for _, g in by_size for lbl in g["shadow_label"]] == expected
    agreed = sum(p == s for p, s in zip(returned, expected, strict=True))
    assert panel["traffic"]["requests"] == 2 and panel["traffic"]["rows"] == 101
    assert panel["shadow"] == {
        "shadow_bundle_id": c,
        "rows": 101,
        "agreed": agreed,
        "rate": agreed / 101,
        "mean_abs_difference": None,
    }


@pytest.mark.unit
def test_an_altered_shadow_bundle_is_refused_and_never_used(client: TestClient, env: Env) -> None:
    c = env.ids["c"]
    production = client.post(
        f"/v1/projects/{PROJECT}/candidates/{env.ids['a']}/shadow", headers=APPROVER
    )
    assert production.status_code == 400 and "production already" in production.json()["detail"]
    onnx = next(p for p in env.bundle_dir("c").rglob("*.onnx"))
    onnx.write_bytes(onnx.read_bytes() + b"\0")
    r = client.post(f"/v1/projects/{PROJECT}/candidates/{c}/shadow", headers=APPROVER)
    assert r.status_code == 400
    assert "sha256 mismatch" in r.json()["detail"] and onnx.name in r.json()["detail"]
    assert read_shadow(env.settings.home, PROJECT) is None  # nothing stays attached
    attach_shadow(env.settings.home, PROJECT, c, "someone")  # written behind the API's back
    shadows = client.app.state.shadow  # type: ignore[attr-defined]
    assert shadows.folder(PROJECT) is None
    shown = client.get(f"/v1/projects/{PROJECT}/shadow", headers=READER).json()
    assert shown["bundle_id"] == c and "sha256 mismatch" in shown["error"]


def test_the_writers_worker_process_predicts_with_the_shadow(built: Built, tmp_path: Path) -> None:
    """Large batches are parsed in a spawned worker: it loads (and verifies) the shadow too."""
    env = make_env(built, tmp_path, **TOKENS)
    a = load(env.bundle_dir("a"))
    validator, predictor = Compiled().of(a)
    bodies = [json.dumps({"rows": [r]}).encode() for r in env.rows[:5]]
    items = [
        (0.0, 0.001, b, predict_answer(a.bundle_id, predictor.predict_rows(validator.rows(b))))
        for b in bodies
    ]
    store = LogStore(log_url(str(tmp_path / "log")))
    batch = Batch(store, PROJECT, DAY, "n", LOGGED, items, env.bundle_dir("c"))
    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
        assert pool.submit(write_batch, batch).result() == (5, 5, 5, 5, 0, None)
    frame = pd.read_parquet(store.day_files(PROJECT, DAY)[0])
    c_validator, c_predictor = Compiled().of(load(env.bundle_dir("c")))
    expected = [c_predictor.predict_rows(c_validator.rows(b))[0]["label"] for b in bodies]
    assert list(frame["shadow_label"]) == expected
    assert set(frame["shadow_bundle_id"]) == {env.ids["c"]}
    env.ledger.dispose()


NO_SHADOW = {
    "bundle_id": None,
    "error": None,
    "predicted_requests": 0,
    "predicted_rows": 0,
    "dropped_requests": 0,
    "failed_rows": 0,
    "last_error": None,
}


@pytest.mark.unit
def test_healthz_counts_the_shadows_predictions_and_the_samples_it_never_saw(
    built: Built, tmp_path: Path
) -> None:
    env = make_env(built, tmp_path, **TOKENS)
    projects = with_log(built, tmp_path, rate=1.0, queue_requests=2, flush_seconds=3600)
    app = create_app(env.settings.model_copy(update={"projects_dir": projects}), poll_seconds=POLL)
    c = env.ids["c"]
    with TestClient(app) as client:
        assert client.get("/healthz").json()["shadow"] == {PROJECT: NO_SHADOW}
        attach = client.post(f"/v1/projects/{PROJECT}/candidates/{c}/shadow", headers=APPROVER)
        assert attach.status_code == 201
        for row in env.rows[:5]:  # two fit the queue, three are dropped
            r = client.post(f"/v1/projects/{PROJECT}/predict", json={"rows": [row]}, headers=READER)
            assert r.status_code == 200
        client.post(f"/v1/projects/{PROJECT}/predict", json={"rows": env.rows[:2]}, headers=READER)
        app.state.prediction_log.flush()
        shadow = client.get("/healthz").json()["shadow"][PROJECT]
        assert shadow == {
            **NO_SHADOW,
            "bundle_id": c,
            "predicted_requests": 2,
            "predicted_rows": 2,
            "dropped_requests": 4,
        }
        assert client.delete(f"/v1/projects/{PROJECT}/shadow", headers=APPROVER).status_code == 200
        assert client.get("/healthz").json()["shadow"][PROJECT] == NO_SHADOW
    env.ledger.dispose()


@pytest.mark.unit
def test_a_failing_shadow_is_counted_and_production_still_logged(
    built: Built, tmp_path: Path
) -> None:
    env = make_env(built, tmp_path, **TOKENS)
    a = load(env.bundle_dir("a"))
    validator, predictor = Compiled().of(a)
    bodies = [json.dumps({"rows": env.rows[:3]}).encode()]
    items = [
        (0.0, 0.001, b, predict_answer(a.bundle_id, predictor.predict_rows(validator.rows(b))))
        for b in bodies
    ]
    gone = env.settings.bundles_dir / ("f" * 64)  # removed after it was attached
    store = LogStore(log_url(str(tmp_path / "log")))
    done = write_batch(Batch(store, PROJECT, DAY, "n", LOGGED, items, gone))
    assert done[:5] == (1, 3, 0, 0, 3)
    assert done.shadow_error is not None and "f" * 64 in done.shadow_error
    assert str(env.settings.bundles_dir) not in done.shadow_error  # /healthz is public
    assert len(pd.read_parquet(store.day_files(PROJECT, DAY)[0])) == 3
    env.ledger.dispose()
