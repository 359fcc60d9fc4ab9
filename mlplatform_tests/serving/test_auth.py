"""Every route declares exactly one auth dependency, and behaves as that dependency says."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from mlplatform.serving.app import create_app
from mlplatform.serving.auth import AUTH_DEPENDENCIES, Authenticator, approver, public, reader
from mlplatform_tests import waiting
from mlplatform_tests.serving.builders import PROJECT, Built
from mlplatform_tests.serving.servers import (
    APPROVER,
    APPROVER_TOKEN,
    POLL,
    READER,
    READER_TOKEN,
    Env,
    Server,
    make_env,
)

P = f"/v1/projects/{PROJECT}"


def samples(env: Env) -> dict[tuple[str, str], tuple[str, dict[str, Any] | None]]:
    """One valid request per route template: (method, template) -> (path, JSON body)."""
    a, c = env.ids["a"], env.ids["c"]
    cutoff = "2023-04-01"
    report = env.settings.reports_dir / PROJECT / f"{cutoff}.html"
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text("<!DOCTYPE html><title>report</title><p>plots</p>", "utf-8")
    return {
        ("GET", "/healthz"): ("/healthz", None),
        ("GET", "/metrics"): ("/metrics", None),
        ("GET", "/v1/projects"): ("/v1/projects", None),
        ("GET", "/v1/projects/{project}/production"): (f"{P}/production", None),
        ("GET", "/v1/bundles/{bundle_id}/files/{path:path}"): (
            f"/v1/bundles/{a}/files/manifest.json",
            None,
        ),
        ("POST", "/v1/projects/{project}/predict"): (f"{P}/predict", {"rows": env.rows[:3]}),
        ("GET", "/v1/projects/{project}/candidates"): (f"{P}/candidates", None),
        ("GET", "/v1/projects/{project}/promotions"): (f"{P}/promotions", None),
        ("POST", "/v1/projects/{project}/candidates/{bundle_id}/approve"): (
            f"{P}/candidates/{c}/approve",
            {"comment": "looks fine"},
        ),
        ("POST", "/v1/projects/{project}/candidates/{bundle_id}/reject"): (
            f"{P}/candidates/{c}/reject",
            {"comment": "too weak"},
        ),
        ("POST", "/v1/projects/{project}/rollback"): (f"{P}/rollback", {"reason": "walk"}),
        ("POST", "/v1/projects/{project}/candidates/{bundle_id}/shadow"): (
            f"{P}/candidates/{c}/shadow",
            None,
        ),
        ("DELETE", "/v1/projects/{project}/shadow"): (f"{P}/shadow", None),
        ("GET", "/v1/projects/{project}/shadow"): (f"{P}/shadow", None),
        ("GET", "/v1/projects/{project}/since-promotion"): (f"{P}/since-promotion", None),
        ("GET", "/review"): ("/review", None),
        ("GET", "/review/{project}"): (f"/review/{PROJECT}", None),
        ("GET", "/v1/projects/{project}/reports/{cutoff}"): (f"{P}/reports/{cutoff}", None),
    }


def api_routes(app: FastAPI) -> list[APIRoute]:
    return [r for r in app.routes if isinstance(r, APIRoute)]


def auth_of(route: APIRoute) -> Any:
    found = [d.call for d in route.dependant.dependencies if d.call in AUTH_DEPENDENCIES]
    assert len(found) == 1, f"{route.path} declares {len(found)} auth dependencies"
    return found[0]


def call(client: TestClient, method: str, path: str, body: Any, headers: dict) -> Any:
    return client.request(method, path, json=body, headers=headers)


def test_every_route_declares_exactly_one_auth_dependency(app: FastAPI, env: Env) -> None:
    routes = api_routes(app)
    assert routes
    kinds = {auth_of(r) for r in routes}
    assert kinds == {public, reader, approver}
    templates = {(m, r.path) for r in routes for m in r.methods}
    assert templates == set(samples(env)), "add a sample request for every new route"


def test_route_walk_with_no_reader_and_approver_tokens(app: FastAPI, env: Env) -> None:
    # b became production after a, so the approver's rollback (to a) is valid.
    env.ledger.promote(PROJECT, env.ids["b"], "ci", "second", expected_from=env.ids["a"])
    requests = samples(env)
    expected = {public: (200, 200, 200), reader: (401, 200, 200), approver: (401, 403, 201)}
    with TestClient(app) as client:
        for route in api_routes(app):
            for method in route.methods:
                path, body = requests[(method, route.path)]
                got = tuple(
                    call(client, method, path, body, headers).status_code
                    for headers in ({}, READER, APPROVER)
                )
                want = expected[auth_of(route)]
                if method == "DELETE":  # detaching answers 200, not 201
                    want = (*want[:2], 200)
                assert got == want, f"{method} {route.path}: {got}"
    decisions = env.ledger.decisions(PROJECT)
    assert [(d.decision, d.actor) for d in decisions] == [
        ("approve", "alice"),
        ("reject", "alice"),
    ]
    assert env.ledger.production(PROJECT).to_bundle == env.ids["a"]  # type: ignore[union-attr]


def test_unknown_or_malformed_tokens_are_401(client: TestClient) -> None:
    for headers in (
        {"Authorization": "Bearer not-a-token"},
        {"Authorization": f"Basic {READER_TOKEN}"},
        {"Authorization": f"Bearer {READER_TOKEN}x"},
        {"Authorization": "Bearer"},
    ):
        r = client.get("/v1/projects", headers=headers)
        assert r.status_code == 401, headers
        assert r.headers["www-authenticate"] == "Bearer"
        assert READER_TOKEN not in r.text


def test_approve_with_reader_token_is_403_and_records_nothing(client: TestClient, env: Env) -> None:
    r = client.post(
        f"{P}/candidates/{env.ids['b']}/approve", json={"comment": "me too"}, headers=READER
    )
    assert r.status_code == 403
    assert "approver" in r.json()["detail"]
    assert env.ledger.decisions(PROJECT) == []


def test_no_tokens_configured_opens_reads_but_not_approvals(built: Built, tmp_path: Any) -> None:
    env = make_env(built, tmp_path)
    app = create_app(env.settings, poll_seconds=POLL)
    with TestClient(app) as client:
        assert client.get("/v1/projects").status_code == 200
        assert client.get(f"{P}/production").status_code == 200
        assert client.post(f"{P}/predict", json={"rows": env.rows[:1]}).status_code == 200
        for headers in ({}, {"Authorization": "Bearer anything"}):
            r = client.post(
                f"{P}/candidates/{env.ids['b']}/approve", json={"comment": ""}, headers=headers
            )
            assert r.status_code == 403
            assert r.json()["detail"] == "no approver tokens configured"
            r = client.post(f"{P}/rollback", json={"reason": "x"}, headers=headers)
            assert r.status_code == 403
    assert env.ledger.decisions(PROJECT) == []
    env.ledger.dispose()


def test_approver_tokens_alone_protect_reads(built: Built, tmp_path: Any) -> None:
    env = make_env(built, tmp_path, approver_tokens={"alice": APPROVER_TOKEN})
    with TestClient(create_app(env.settings, poll_seconds=POLL)) as client:
        assert client.get("/v1/projects").status_code == 401
        assert client.get("/v1/projects", headers=APPROVER).status_code == 200
    env.ledger.dispose()


def test_authenticator_compares_every_token() -> None:
    auth = Authenticator({"rita": "r", "both": "same"}, {"alice": "a", "boss": "same"})
    assert auth.identify("r").name == "rita"  # type: ignore[union-attr]
    assert auth.identify("a").role == "approver"  # type: ignore[union-attr]
    same = auth.identify("same")
    assert same is not None and (same.name, same.role) == ("boss", "approver")
    assert auth.identify("") is None and auth.identify(None) is None
    assert auth.identify("nope") is None
    assert auth.identify("rité") is None  # non-ASCII input never raises


def test_tokens_never_reach_the_logs(
    client: TestClient, env: Env, server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "wrong-secret-5d2e9a"
    client.get("/v1/projects", headers=READER)
    client.get("/v1/projects", headers={"Authorization": f"Bearer {wrong}"})
    client.post(f"{P}/predict", json={"rows": [{"tenure_months": "x"}]}, headers=READER)
    r = client.post(
        f"{P}/candidates/{env.ids['c']}/approve", json={"comment": ""}, headers=APPROVER
    )
    assert r.status_code == 201
    with server.http() as http:  # real uvicorn, with its access log going to the root logger
        assert http.get("/v1/projects").status_code == 200
        assert http.get("/v1/projects", headers={"Authorization": f"Bearer {wrong}"}).status_code
    waiting.wait_for(
        "uvicorn's access log", lambda: "GET /v1/projects" in caplog.text, 15, interval=0.01
    )
    assert "alice recorded approve" in caplog.text  # the identity is logged...
    for secret in (READER_TOKEN, APPROVER_TOKEN, wrong):  # ...never a token
        assert secret not in caplog.text
