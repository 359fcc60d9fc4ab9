"""HTTP API: projects, manifests with ETags, downloads, predict + 422s, reviews, rollback."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

from mlplatform.bundles.format import load
from mlplatform_tests import waiting
from mlplatform_tests.serving.builders import OTHER_PROJECT, PROJECT
from mlplatform_tests.serving.servers import APPROVER, READER, Env, flip_byte

P = f"/v1/projects/{PROJECT}"


def served(client: TestClient) -> str | None:
    r = client.get(f"{P}/production", headers=READER)
    return r.json()["bundle_id"] if r.status_code == 200 else None


def test_projects_describe_their_input_schema(client: TestClient, env: Env) -> None:
    r = client.get("/v1/projects", headers=READER)
    assert r.status_code == 200
    projects = {p["name"]: p for p in r.json()["projects"]}
    assert set(projects) == {PROJECT, OTHER_PROJECT}
    assert projects[OTHER_PROJECT]["production_bundle_id"] is None
    assert projects[OTHER_PROJECT]["input_schema"] is None
    shop = projects[PROJECT]
    assert shop["production_bundle_id"] == env.ids["a"]
    schema = shop["input_schema"]
    columns = {c["name"]: c for c in schema["columns"]}
    assert list(columns) == load(env.bundle_dir("a")).schema.feature_columns
    assert columns["plan"]["type"] == "category"
    assert columns["plan"]["values"] == ["basic", "standard", "premium"]
    assert (columns["tenure_months"]["min"], columns["tenure_months"]["max"]) == (0, 120)
    assert columns["signup_date"]["format"] == "%d/%m/%Y"
    assert columns["signup_date"]["date_parts"] == ["year", "month", "dayofweek"]
    assert columns["autopay"]["accepts"] == "boolean or true/false-like string"
    assert "customer_id" in schema["ignored_columns"] and "churned" in schema["ignored_columns"]
    assert schema["classes"] == ["no", "yes"]


def test_production_manifest_etag_and_304(client: TestClient, env: Env) -> None:
    r = client.get(f"{P}/production", headers=READER)
    assert r.status_code == 200
    manifest = json.loads((env.bundle_dir("a") / "manifest.json").read_text())
    assert r.json() == manifest
    etag = f'"{env.ids["a"]}"'
    assert r.headers["etag"] == etag
    for header in (etag, f"W/{etag}", f'"nope", {etag}', "*"):
        again = client.get(f"{P}/production", headers={**READER, "If-None-Match": header})
        assert again.status_code == 304, header
        assert again.content == b""
        assert again.headers["etag"] == etag
    other = client.get(f"{P}/production", headers={**READER, "If-None-Match": '"old"'})
    assert other.status_code == 200 and other.json()["bundle_id"] == env.ids["a"]


def test_production_404_names_the_project(client: TestClient) -> None:
    for project in ("nope", OTHER_PROJECT):
        r = client.get(f"/v1/projects/{project}/production", headers=READER)
        assert r.status_code == 404
        assert repr(project) in r.json()["detail"]


def test_bundle_files_are_content_addressed_downloads(client: TestClient, env: Env) -> None:
    bid = env.ids["b"]
    manifest = json.loads((env.bundle_dir("b") / "manifest.json").read_text())
    r = client.get(f"/v1/bundles/{bid}/files/manifest.json", headers=READER)
    assert r.status_code == 200
    assert r.content == (env.bundle_dir("b") / "manifest.json").read_bytes()
    assert "immutable" in r.headers["cache-control"]
    for rel, sha in manifest["files"].items():
        r = client.get(f"/v1/bundles/{bid}/files/{rel}", headers=READER)
        assert r.status_code == 200, rel
        assert hashlib.sha256(r.content).hexdigest() == sha
        assert r.headers["etag"] == f'"{sha}"'
        assert r.headers["cache-control"] == "public, max-age=31536000, immutable"
    rel, sha = next(iter(manifest["files"].items()))
    r = client.get(
        f"/v1/bundles/{bid}/files/{rel}", headers={**READER, "If-None-Match": f'"{sha}"'}
    )
    assert r.status_code == 304
    (env.bundle_dir("b") / "notes.txt").write_text("not listed")
    for path in (
        f"/v1/bundles/{bid}/files/notes.txt",
        f"/v1/bundles/{bid}/files/model%2F..%2F..%2F..%2Fledger.db",
        f"/v1/bundles/{bid}/files/%2E%2E/%2E%2E/ledger.db",
        f"/v1/bundles/{bid}/files//etc/passwd",
        f"/v1/bundles/{'0' * 64}/files/manifest.json",
        "/v1/bundles/..%2F..%2Fledger.db/files/manifest.json",
    ):
        r = client.get(path, headers=READER)
        assert r.status_code == 404, path
        assert "not listed" not in r.text


def test_predict_matches_the_bundle(client: TestClient, env: Env) -> None:
    rows = env.rows[:60]
    r = client.post(f"{P}/predict", json={"rows": rows}, headers=READER)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["bundle_id"] == env.ids["a"]
    expected = load(env.bundle_dir("a")).predict_rows(rows)
    assert [p["label"] for p in body["predictions"]] == [e["label"] for e in expected]
    for got, want in zip(body["predictions"], expected, strict=True):
        assert got["probabilities"] == pytest.approx(want["probabilities"], abs=1e-12)


@pytest.mark.parametrize(
    ("row", "field", "reason"),
    [
        ({"tenure_months": "abc"}, "rows.1.tenure_months", "not a number: 'abc'"),
        ({"tenure_months": "inf"}, "rows.1.tenure_months", "not a number"),
        ({"bogus": 1}, "rows.1.bogus", "unknown field"),
        ({"plan": 3}, "rows.1.plan", "expected a string, got int"),
        ({"signup_date": 20200131}, "rows.1.signup_date", "expected a string"),
        ({"autopay": "maybe"}, "rows.1.autopay", "not true/false: 'maybe'"),
        ({"monthly_charges": True}, "rows.1.monthly_charges", "expected a number"),
        ({"monthly_charges": [1]}, "rows.1.monthly_charges", "expected a number"),
        ({"customer_id": {"a": 1}}, "rows.1.customer_id", "expected a scalar"),
    ],
)
def test_predict_422_names_field_and_reason(
    client: TestClient, env: Env, row: dict[str, Any], field: str, reason: str
) -> None:
    r = client.post(f"{P}/predict", json={"rows": [env.rows[0], row]}, headers=READER)
    assert r.status_code == 422
    details = r.json()["detail"]
    assert [d["field"] for d in details] == [field]
    assert reason in details[0]["msg"]


def test_predict_422_for_bad_bodies(client: TestClient, env: Env) -> None:
    cases = [
        (b'{"rows": []}', "rows"),
        (json.dumps({"rows": [{}] * 10_001}).encode(), "rows"),
        (b'{"rows": [{}], "extra": 1}', "extra"),
        (b"{}", "rows"),
        (b"not json", "body"),
        (b'{"rows": [7]}', "rows.0"),
    ]
    for payload, field in cases:
        r = client.post(
            f"{P}/predict",
            content=payload,
            headers={**READER, "Content-Type": "application/json"},
        )
        assert r.status_code == 422, payload[:30]
        assert r.json()["detail"][0]["field"] == field, payload[:30]


def test_predict_handles_missing_and_unknown_values_like_training(
    client: TestClient, env: Env
) -> None:
    base = {k: v for k, v in env.rows[0].items() if k != "plan"}
    dirty = [
        {},
        {"tenure_months": None, "plan": "NA", "autopay": ""},
        {**base, "plan": "gold", "signup_date": "2020-01-31", "support_calls": "2.5"},
        {**base, "tenure_months": "-5", "monthly_charges": 10_000},
    ]
    as_missing = [
        {},
        {},
        {**base, "signup_date": None, "support_calls": None},
        {**base, "tenure_months": 0, "monthly_charges": 500},  # clipped to [min, max]
    ]
    r = client.post(f"{P}/predict", json={"rows": dirty}, headers=READER)
    assert r.status_code == 200, r.text
    expected = load(env.bundle_dir("a")).predict_rows(as_missing)
    got = r.json()["predictions"]
    assert [p["label"] for p in got] == [e["label"] for e in expected]
    for mine, want in zip(got, expected, strict=True):
        assert mine["probabilities"] == pytest.approx(want["probabilities"], abs=1e-12)


def test_candidates_side_by_side_with_production(client: TestClient, env: Env) -> None:
    a, b, c = env.ids["a"], env.ids["b"], env.ids["c"]
    r = client.post(f"{P}/candidates/{b}/approve", json={"comment": "better"}, headers=APPROVER)
    assert r.status_code == 201
    decision = r.json()
    assert (decision["decision"], decision["actor"], decision["comment"]) == (
        "approve",
        "alice",
        "better",
    )
    assert decision["bundle_id"] == b and decision["project"] == PROJECT
    r = client.post(f"{P}/candidates/{c}/reject", json={"comment": "weak"}, headers=APPROVER)
    assert r.status_code == 201 and r.json()["decision"] == "reject"
    body = client.get(f"{P}/candidates", headers=READER).json()
    assert body["production"]["bundle_id"] == a
    by_id = {x["bundle_id"]: x for x in body["candidates"]}
    assert set(by_id) == {b, c}
    assert [d["actor"] for d in by_id[b]["approvals"]] == ["alice"] and not by_id[b]["rejections"]
    assert [d["comment"] for d in by_id[c]["rejections"]] == ["weak"]
    manifest_b = json.loads((env.bundle_dir("b") / "manifest.json").read_text())
    assert by_id[b]["metrics"] == manifest_b["metrics"]
    assert by_id[b]["candidate"] == manifest_b["candidate"]
    assert by_id[b]["gates"] == manifest_b["gates"]
    roc = by_id[b]["comparison"]["roc_auc"]
    assert roc["production"] == body["production"]["metrics"]["roc_auc"]
    assert roc["delta"] == pytest.approx(roc["candidate"] - roc["production"])
    assert not by_id[b]["previously_production"]
    assert {d.bundle_id for d in env.ledger.decisions(PROJECT)} == {b, c}


def test_decisions_need_a_published_bundle_of_the_project(client: TestClient, env: Env) -> None:
    for path, status in [
        (f"{P}/candidates/{'f' * 64}/approve", 404),
        (f"{P}/candidates/not-an-id/reject", 404),
        (f"/v1/projects/{OTHER_PROJECT}/candidates/{env.ids['b']}/approve", 404),
        (f"/v1/projects/nope/candidates/{env.ids['b']}/approve", 404),
        (f"{P}/candidates/{env.ids['a']}/approve", 409),  # production already
    ]:
        r = client.post(path, json={"comment": "x"}, headers=APPROVER)
        assert r.status_code == status, path
    r = client.post(f"{P}/candidates/{env.ids['b']}/approve", json={"who": 1}, headers=APPROVER)
    assert r.status_code == 422 and r.json()["detail"][0]["field"] == "who"
    assert env.ledger.decisions(PROJECT) == []


def test_rollback_to_previous_production(client: TestClient, env: Env) -> None:
    a, b = env.ids["a"], env.ids["b"]
    r = client.post(f"{P}/rollback", json={"reason": "nothing before a"}, headers=APPROVER)
    assert r.status_code == 400 and "no previous bundle" in r.json()["detail"]
    env.ledger.promote(PROJECT, b, "dagster", "approved", expected_from=a)
    waiting.wait_for("b to be served", lambda: served(client) == b, 15, interval=0.01)
    r = client.post(
        f"{P}/rollback", json={"to_bundle": None, "reason": "b drifts"}, headers=APPROVER
    )
    assert r.status_code == 201, r.text
    row = r.json()
    assert (row["from_bundle"], row["to_bundle"], row["kind"]) == (b, a, "rollback")
    assert (row["actor"], row["reason"]) == ("alice", "b drifts")
    assert served(client) == a  # instantly: the response comes after the swap
    history = client.get(f"{P}/promotions", headers=READER).json()
    assert history["production"] == a
    assert [(p["to_bundle"], p["kind"]) for p in history["promotions"]] == [
        (a, "promote"),
        (b, "promote"),
        (a, "rollback"),
    ]
    r = client.post(f"{P}/rollback", json={"to_bundle": b, "reason": "fixed"}, headers=APPROVER)
    assert r.status_code == 201 and served(client) == b


def test_rollback_refusals(client: TestClient, env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    a, b, c = env.ids["a"], env.ids["b"], env.ids["c"]
    env.ledger.promote(PROJECT, b, "dagster", "approved", expected_from=a)
    cases = [
        (OTHER_PROJECT, {"reason": "x"}, 400, "no production bundle"),
        (PROJECT, {"to_bundle": c, "reason": "x"}, 400, "never production"),
        (PROJECT, {"to_bundle": b, "reason": "x"}, 400, "already production"),
        (PROJECT, {"to_bundle": "f" * 64, "reason": "x"}, 404, "not a published bundle"),
        (PROJECT, {"to_bundle": a}, 422, "reason"),
        (PROJECT, {"reason": ""}, 422, "reason"),
    ]
    for project, body, status, text in cases:
        r = client.post(f"/v1/projects/{project}/rollback", json=body, headers=APPROVER)
        assert r.status_code == status, body
        assert text in json.dumps(r.json()), r.json()
    restore = flip_byte(next(env.bundle_dir("a").rglob("model.onnx")))
    try:
        r = client.post(f"{P}/rollback", json={"reason": "x"}, headers=APPROVER)
        assert r.status_code == 400 and "fails verification" in r.json()["detail"]
    finally:
        restore()
    # Someone else promotes between our read of the pointer and our write: 409, no change.
    stale = env.ledger.production(PROJECT)
    env.ledger.promote(PROJECT, c, "dagster", "approved", expected_from=b)
    ledger = client.app.state.ledger  # type: ignore[attr-defined]
    monkeypatch.setattr(ledger, "production", lambda project: stale)
    r = client.post(f"{P}/rollback", json={"to_bundle": a, "reason": "x"}, headers=APPROVER)
    assert r.status_code == 409
    monkeypatch.undo()
    assert env.ledger.production(PROJECT).to_bundle == c  # type: ignore[union-attr]
    assert len(env.ledger.history(PROJECT)) == 3


def test_tampered_new_production_is_not_swapped_in(client: TestClient, env: Env) -> None:
    a, c = env.ids["a"], env.ids["c"]
    flip_byte(next(env.bundle_dir("c").rglob("model.onnx")))
    env.ledger.promote(PROJECT, c, "dagster", "approved", expected_from=a)

    def health_error() -> Any:
        health = client.get("/healthz").json()
        return health if health["projects"][PROJECT]["error"] else None

    health = waiting.wait_for("the refusal in /healthz", health_error, 15, interval=0.01)
    shop = health["projects"][PROJECT]
    assert health["status"] == "degraded"
    assert shop["bundle_id"] == a and shop["ledger_bundle_id"] == c
    assert c in shop["error"] and "sha256 mismatch" in shop["error"]
    assert str(env.settings.home) not in shop["error"]
    r = client.post(f"{P}/predict", json={"rows": env.rows[:2]}, headers=READER)
    assert r.status_code == 200 and r.json()["bundle_id"] == a
    assert served(client) == a
    text = client.get("/metrics").text
    assert f'mlplatform_bundle_swap_failures_total{{project="{PROJECT}"}} 1.0' in text


def test_metrics_count_routes_and_follow_production(client: TestClient, env: Env) -> None:
    client.post(f"{P}/predict", json={"rows": env.rows[:5]}, headers=READER)
    client.get("/v1/projects", headers={"Authorization": "Bearer wrong"})
    text = client.get("/metrics").text
    assert 'route="/v1/projects/{project}/predict",status="200"' in text
    assert 'route="/v1/projects",status="401"' in text
    assert "mlplatform_http_request_duration_seconds_bucket" in text
    info = 'mlplatform_production_bundle_info{{bundle_id="{}",project="shop"}} 1.0'
    assert info.format(env.ids["a"]) in text
    env.ledger.promote(PROJECT, env.ids["b"], "dagster", "approved", expected_from=env.ids["a"])
    waiting.wait_for("b to be served", lambda: served(client) == env.ids["b"], 15, interval=0.01)
    text = client.get("/metrics").text
    assert info.format(env.ids["b"]) in text
    assert info.format(env.ids["a"]) not in text


def test_openapi_documents_every_route_and_its_auth(client: TestClient) -> None:
    doc = client.get("/openapi.json").json()
    predict = doc["paths"]["/v1/projects/{project}/predict"]["post"]
    assert predict["requestBody"]["content"]["application/json"]["schema"]["required"] == ["rows"]
    assert predict["security"] == [{"HTTPBearer": []}]
    assert "security" not in doc["paths"]["/healthz"]["get"]
    assert "PredictOut" in doc["components"]["schemas"]
