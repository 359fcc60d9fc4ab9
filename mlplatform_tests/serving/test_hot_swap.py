"""A real uvicorn server swaps production bundles under concurrent load without an error."""

from __future__ import annotations

import threading
from typing import Any

import httpx

from mlplatform.bundles.format import load
from mlplatform_tests import waiting
from mlplatform_tests.serving.builders import PROJECT
from mlplatform_tests.serving.servers import APPROVER, Server

THREADS = 4
MIN_REQUESTS = 200


def test_hot_swap_under_concurrent_requests(server: Server) -> None:
    env = server.env
    a, b = env.ids["a"], env.ids["b"]
    ledger = env.ledger
    current = ledger.production(PROJECT)
    if current is None or current.to_bundle != a:
        ledger.promote(PROJECT, a, "test", "reset", expected_from=current and current.to_bundle)
    waiting.wait_for("a to be served", lambda: server.served() == a, 15, interval=0.01)
    row = env.rows[0]
    expected = {bid: load(env.settings.bundles_dir / bid).predict_rows([row]) for bid in (a, b)}
    assert expected[a] != expected[b]  # otherwise a swap would go unnoticed

    stop = threading.Event()
    results: list[list[tuple[int, Any]]] = [[] for _ in range(THREADS)]
    failures: list[BaseException] = []

    def hammer(out: list[tuple[int, Any]]) -> None:
        try:
            with server.http() as http:
                while not stop.is_set() or len(out) < MIN_REQUESTS:
                    r = http.post(f"/v1/projects/{PROJECT}/predict", json={"rows": [row]})
                    out.append((r.status_code, r.json()))
        except BaseException as exc:  # a dropped connection is a failure too
            failures.append(exc)

    threads = [threading.Thread(target=hammer, args=(out,)) for out in results]
    for t in threads:
        t.start()
    try:
        steps = [("promote", b), ("rollback", a), ("promote", b), ("api-rollback", a)]
        steps.append(("promote", b))
        for kind, target in steps:
            before = sum(len(r) for r in results)
            waiting.wait_for(
                "traffic",
                lambda n=before: sum(len(r) for r in results) > n + 20,
                15,
                interval=0.01,
            )
            if kind == "api-rollback":
                with httpx.Client(base_url=server.base_url, headers=APPROVER) as http:
                    r = http.post(f"/v1/projects/{PROJECT}/rollback", json={"reason": "load"})
                    assert r.status_code == 201, r.text
                    assert r.json()["to_bundle"] == target
            else:
                now = ledger.production(PROJECT)
                ledger.promote(
                    PROJECT,
                    target,
                    "test",
                    kind,
                    kind="rollback" if kind == "rollback" else "promote",
                    expected_from=now.to_bundle if now else None,
                )
            waiting.wait_for(
                f"{target[:8]} to be served",
                lambda t=target: server.served() == t,
                15,
                interval=0.01,
            )
        waiting.wait_for(
            "load", lambda: all(len(r) >= MIN_REQUESTS for r in results), 60, interval=0.01
        )
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    assert not failures, failures[:3]
    flat = [x for out in results for x in out]
    assert len(flat) >= THREADS * MIN_REQUESTS
    errors = [(status, body) for status, body in flat if status != 200]
    assert not errors, errors[:3]
    seen = {body["bundle_id"] for _, body in flat}
    assert seen == {a, b}
    for _, body in flat:  # each answer comes entirely from the bundle it names
        assert body["predictions"] == expected[body["bundle_id"]]
    with server.http() as http:
        last = http.post(f"/v1/projects/{PROJECT}/predict", json={"rows": [row]}).json()
    assert last["bundle_id"] == b
    assert last["predictions"] == expected[b]
    kinds = [p.kind for p in ledger.history(PROJECT)[-5:]]
    assert kinds == ["promote", "rollback", "promote", "rollback", "promote"]
