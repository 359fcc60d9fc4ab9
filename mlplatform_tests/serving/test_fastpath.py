"""The predict fast path changes speed, never answers: every request gets the same status and
body with and without it, and metrics count both paths under the same route."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from mlplatform.serving.app import create_app
from mlplatform.serving.predict import INLINE_ROWS
from mlplatform.serving.schemas import PredictOut
from mlplatform_tests.serving.builders import PROJECT
from mlplatform_tests.serving.servers import APPROVER, READER, Env


@pytest.fixture
def clients(env: Env) -> Iterator[tuple[TestClient, TestClient]]:
    fast = create_app(env.settings, poll_seconds=60, ledger=env.ledger)
    slow = create_app(env.settings, poll_seconds=60, ledger=env.ledger, fast_path=False)
    with TestClient(fast) as f, TestClient(slow) as s:
        yield f, s


def cases(rows: list[dict[str, Any]]) -> list[tuple[str, dict[str, str], Any]]:
    bad_value = {**rows[0], "tenure_months": "many"}
    unknown = {**rows[0], "favourite_colour": "blue"}
    batch = (rows * (INLINE_ROWS // len(rows) + 2))[: INLINE_ROWS + 1]
    return [
        (PROJECT, READER, {"rows": rows[:1]}),
        (PROJECT, APPROVER, {"rows": rows[:7]}),
        (PROJECT, READER, {"rows": batch}),  # large: the FastAPI route on both
        (PROJECT, READER, {"rows": [bad_value]}),
        (PROJECT, READER, {"rows": [unknown]}),
        (PROJECT, READER, {"rows": []}),
        (PROJECT, READER, {"columns": {}}),
        (PROJECT, {}, {"rows": rows[:1]}),
        (PROJECT, {"Authorization": "Bearer nope"}, {"rows": rows[:1]}),
        (PROJECT, {"Authorization": "Basic abc"}, {"rows": rows[:1]}),
        ("no_such_project", READER, {"rows": rows[:1]}),
    ]


def test_both_paths_answer_alike(clients: tuple[TestClient, TestClient], env: Env) -> None:
    fast, slow = clients
    statuses = []
    for project, headers, body in cases(env.rows):
        a = fast.post(f"/v1/projects/{project}/predict", json=body, headers=headers)
        b = slow.post(f"/v1/projects/{project}/predict", json=body, headers=headers)
        assert (a.status_code, a.json()) == (b.status_code, b.json()), (project, headers, body)
        assert a.headers["content-type"].startswith("application/json")
        if a.status_code == 200:  # one predict contract: the same bytes, exactly a PredictOut
            assert a.content == b.content
            assert PredictOut.model_validate_json(a.content).model_dump() == a.json()
        statuses.append(a.status_code)
    assert statuses.count(200) == 3 and 401 in statuses and 422 in statuses and 404 in statuses


def test_fast_answers_are_counted_like_the_route(
    clients: tuple[TestClient, TestClient], env: Env
) -> None:
    fast, _ = clients
    for _ in range(3):
        assert (
            fast.post(
                f"/v1/projects/{PROJECT}/predict", json={"rows": env.rows[:2]}, headers=READER
            ).status_code
            == 200
        )
    text = fast.get("/metrics").text
    line = next(
        ln
        for ln in text.splitlines()
        if ln.startswith("mlplatform_http_requests_total")
        and 'route="/v1/projects/{project}/predict"' in ln
        and 'status="200"' in ln
    )
    assert float(line.rsplit(" ", 1)[1]) == 3.0
