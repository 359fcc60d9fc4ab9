"""``<project>__alerts``: a real local HTTP receiver gets exactly one alert per failed check
(deduplicated across ticks and re-runs), retried after a 500; failed runs, promotions and
rollbacks alert too."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import dagster as dg
import pandas as pd
import pytest

from mlplatform.defs.build import build_defs, data_job_name
from mlplatform.ledger import Ledger
from mlplatform_tests.projects import ProjectFactory

SECRET_PATH = "/hooks/T000/B000/not-for-logs"


@dataclass
class Receiver:
    """Answers the scripted statuses in order (then 200) and records every request."""

    url: str
    script: list[int]
    got: list[tuple[int, dict[str, Any]]] = field(default_factory=list)

    def delivered(self) -> list[dict[str, Any]]:
        return [body for status, body in self.got if status == 200]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver("", [])

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            status = state.script.pop(0) if state.script else 200
            state.got.append((status, body))
            self.send_response(status)
            self.end_headers()

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}{SECRET_PATH}"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_one_alert_per_failed_check_retried_after_a_500(
    make_project: ProjectFactory,
    instance: dg.DagsterInstance,
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    project = make_project(
        months=3, rows=150, alerts={"webhook_env": "TEST_ALERTS_URL", "backoff_seconds": 0.05}
    )
    monkeypatch.setenv("TEST_ALERTS_URL", receiver.url)
    spec, p = project.spec, project.spec.name
    defs = build_defs(project.settings, [spec])
    sensor = defs.get_sensor_def(f"{p}__alerts")
    job = defs.resolve_job_def(data_job_name(p))

    def tick(cursor: str | None) -> tuple[str, str]:
        with dg.build_sensor_context(
            instance=instance, cursor=cursor, definitions=defs, resources=defs.resources
        ) as context:
            result = sensor(context)
            assert context.cursor is not None
            return context.cursor, str(getattr(result, "skip_message", ""))

    good, bad, gone = project.files
    assert job.execute_in_process(partition_key=good.stem, instance=instance).success
    cursor, _ = tick(None)  # starts now: nothing before it is sent
    assert receiver.got == []

    frame = pd.read_csv(bad, dtype=str, keep_default_na=False)
    frame.loc[:9, spec.target] = ""  # the target check fails (blocking)
    frame.to_csv(bad, index=False)
    for _ in range(2):  # the same failure twice: one alert
        run = job.execute_in_process(
            partition_key=bad.stem, instance=instance, raise_on_error=False
        )
        assert not run.success
    failed = {
        e.check_name
        for e in run.get_asset_check_evaluations()
        if not e.passed and e.asset_key == dg.AssetKey([p, "raw"])
    }
    assert "target" in failed
    receiver.script = [500]
    cursor, message = tick(cursor)
    assert message.startswith(f"{len(failed)} alert(s) sent"), message
    assert SECRET_PATH not in message  # the webhook's secret path is never shown
    assert [status for status, _ in receiver.got][:2] == [500, 200]  # retried after the 500
    delivered = receiver.delivered()
    assert sorted(b["details"]["check"] for b in delivered) == sorted(failed)
    assert all(b["event"] == "failed_check" and b["project"] == p for b in delivered)
    target = next(b for b in delivered if b["details"]["check"] == "target")
    assert f"`target` failed on {p}/raw[{bad.stem}]" in target["text"]
    assert target["details"]["partition"] == bad.stem and target["details"]["blocking"]

    cursor, _ = tick(cursor)
    assert len(receiver.delivered()) == len(failed)  # nothing sent twice

    gone.unlink()  # a run that fails without a check: the step cannot read its file
    assert not job.execute_in_process(
        partition_key=gone.stem, instance=instance, raise_on_error=False
    ).success
    ledger = Ledger(project.settings.ledger)
    ledger.promote(p, "a" * 64, "ci", "first", expected_from=None)
    ledger.promote(p, "b" * 64, "ci", "second")
    ledger.promote(p, "a" * 64, "ops", "bad calibration", kind="rollback")
    ledger.dispose()
    cursor, _ = tick(cursor)
    later = receiver.delivered()[len(failed) :]
    assert [b["event"] for b in later] == ["failed_run", "promotion", "promotion", "rollback"]
    assert gone.name in later[0]["details"]["error"], later[0]
    assert (
        "ops rolled back production bbbbbbbbbbbb -> aaaaaaaaaaaa: bad calibration"
        in (later[-1]["text"])
    )
    cursor, _ = tick(cursor)
    assert len(receiver.delivered()) == len(failed) + 4


def test_undelivered_alerts_are_kept_for_the_next_tick(
    make_project: ProjectFactory,
    instance: dg.DagsterInstance,
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    project = make_project(
        months=2,
        rows=100,
        alerts={"webhook_env": "TEST_ALERTS_URL", "retries": 1, "backoff_seconds": 0.01},
    )
    monkeypatch.setenv("TEST_ALERTS_URL", receiver.url)
    p = project.spec.name
    defs = build_defs(project.settings, [project.spec])
    sensor = defs.get_sensor_def(f"{p}__alerts")

    def tick(cursor: str | None) -> str:
        with dg.build_sensor_context(
            instance=instance, cursor=cursor, definitions=defs, resources=defs.resources
        ) as context:
            sensor(context)
            assert context.cursor is not None
            return context.cursor

    cursor = tick(None)
    ledger = Ledger(project.settings.ledger)
    ledger.promote(p, "a" * 64, "ci", "first", expected_from=None)
    ledger.dispose()
    receiver.script = [503, 503]  # both attempts of this tick fail
    cursor = tick(cursor)
    assert [s for s, _ in receiver.got] == [503, 503] and receiver.delivered() == []
    cursor = tick(cursor)
    assert [b["event"] for b in receiver.delivered()] == ["promotion"]
    cursor = tick(cursor)
    assert len(receiver.delivered()) == 1

    # a receiver that refuses an alert (4xx) does not hold back the ones after it
    ledger = Ledger(project.settings.ledger)
    ledger.promote(p, "b" * 64, "ci", "second")
    receiver.script = [400]
    cursor = tick(cursor)
    ledger.promote(p, "a" * 64, "ops", "back", kind="rollback")
    ledger.dispose()
    tick(cursor)
    assert [s for s, _ in receiver.got][-2:] == [400, 200]  # not retried, then the next one
    assert [b["event"] for b in receiver.delivered()] == ["promotion", "rollback"]
