"""Hostile input against the serving app: body caps and auth before reading, row limits,
tampered bundles on disk, docs pages, security headers, startup errors (issue 13)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from mlplatform.bundles.format import load
from mlplatform.serving.app import create_app
from mlplatform.serving.bodies import DECISION_BODY_BYTES
from mlplatform.serving.predict import Compiled
from mlplatform.serving.rows import MAX_ROWS, PRESCAN_BYTES, error_details, prescan
from mlplatform_tests.serving import abuse
from mlplatform_tests.serving.builders import PROJECT, Built
from mlplatform_tests.serving.servers import (
    APPROVER,
    APPROVER_TOKEN,
    POLL,
    READER,
    READER_TOKEN,
    TOKENS,
    Env,
    Server,
    flip_byte,
    make_env,
)

P = f"/v1/projects/{PROJECT}"


# -- limits before work ---------------------------------------------------------------------


def test_decision_without_token_is_refused_before_its_body_is_read(server: Server) -> None:
    # 300 MB declared, 1 MiB sent: the 401 must come without waiting for the rest.
    b = server.env.ids["b"]
    assert abuse.unauthenticated_huge_decision(server.base_url, b) == 401
    head = abuse.request_head(
        "POST", f"{P}/rollback", {"Content-Length": str(abuse.DECLARED), **READER}
    )
    assert abuse.raw_status(server.base_url, head, b"{") == 403  # a reader, not an approver
    assert server.env.ledger.decisions(PROJECT) == []


def test_decision_bodies_are_capped_while_reading(server: Server) -> None:
    b = server.env.ids["b"]
    path = f"{P}/candidates/{b}/reject"
    head = abuse.request_head("POST", path, {"Content-Length": str(1 << 20), **APPROVER})
    assert abuse.raw_status(server.base_url, head, b"{") == 413  # declared: nothing read
    assert abuse.oversize_decision(server.base_url, b, APPROVER_TOKEN) == 413  # streamed
    with server.http(APPROVER) as h:
        r = h.post(f"{P}/rollback", content=b" " * (DECISION_BODY_BYTES + 1))
        assert r.status_code == 413
        assert r.json()["detail"] == (
            f"request body too large: this route accepts at most {DECISION_BODY_BYTES} bytes"
        )
        assert server.env.ledger.decisions(PROJECT) == []
        # A long comment, fully escaped, still fits.
        r = h.post(f"{path}", json={"comment": "\u00e9" * 4000})
        assert r.status_code == 201, r.text
        r = h.post(f"{path}", content=b"")
        assert r.status_code == 422 and r.json()["detail"][0]["type"] == "json_invalid"


def test_predict_stops_parsing_past_the_row_limit(server: Server, tmp_path: Path) -> None:
    # Over HTTP: 10M empty rows (28 MiB, under the predict cap) -> 422 naming rows.
    body = abuse.many_rows_body()
    with server.http() as h:
        r = h.post(f"{P}/predict", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 422
    assert r.json()["detail"][0]["field"] == "rows"
    assert "more than 10000 rows" in r.json()["detail"][0]["msg"]
    # In a fresh process: the validator's peak memory stays near the body's size.
    manifest = server.env.bundle_dir("a") / "manifest.json"
    script = (
        "import json, sys\n"
        # VmHWM: this process image's own peak (ru_maxrss would carry the forking pytest's)
        "def peak_kib():\n"
        "    lines = open('/proc/self/status').read().splitlines()\n"
        "    return int(next(l.split()[1] for l in lines if l.startswith('VmHWM:')))\n"
        "from pydantic import ValidationError\n"
        "from mlplatform.bundles.format import InputSchema\n"
        "from mlplatform.serving.rows import PredictValidator, error_details\n"
        "schema = json.load(open(sys.argv[1]))['input_schema']\n"
        "v = PredictValidator(InputSchema.from_json(schema))\n"
        "body = b'{\"rows\": [' + b'{},' * 9999999 + b'{}]}'\n"
        "before = peak_kib()\n"
        "try:\n"
        "    v.rows(body)\n"
        "    fields = []\n"
        "except ValidationError as exc:\n"
        "    fields = [d['field'] for d in error_details(exc)]\n"
        "after = peak_kib()\n"
        "print(json.dumps({'grew_mb': (after - before) / 1024, 'fields': fields}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, str(manifest)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ},
    )
    assert out.returncode == 0, out.stderr[-2000:]
    found = json.loads(out.stdout.strip().splitlines()[-1])
    assert found["fields"] == ["rows"]
    assert found["grew_mb"] < 200, found  # building 10M rows takes well over a GB


def test_large_bodies_are_validated_in_chunks_exactly_like_small_ones(env: Env) -> None:
    """Bodies over PRESCAN_BYTES are parsed row by row and validated CHUNK_ROWS at a time;
    rows and 422 details are those of validating the whole body at once."""
    validator, _ = Compiled().of(load(env.bundle_dir("a")))
    good = env.rows[0]
    # the row-by-row path is taken: a well-formed body's rows come out of the scan
    for shaped in ({"rows": [good] * 9_000}, {"rows": [good, 7]}):
        scanned = prescan(json.dumps(shaped, indent=1).encode(), MAX_ROWS)
        assert scanned.error is None and scanned.rows == shaped["rows"]
    assert prescan(b'{"rows": [1],}', MAX_ROWS).rows is None
    bad = [{"tenure_months": True}, {"x": 1}, 7, {"autopay": "maybe"}, {"customer_id": {}}]
    rows = [good] * 10_000
    for i, row in enumerate(bad):
        rows[3 + i * 997] = row
    for body in (
        json.dumps({"rows": [good] * 10_000}).encode(),
        json.dumps({"rows": rows}).encode(),
        json.dumps({"rows": [{"tenure_months": True}] * 5_000}).encode(),
        b'{"rows": [' + b'{"tenure_months": NaN},' * 3000 + b"{}]}",
        json.dumps({"rows": [good] * 9_000, "x": 1}).encode(),
    ):
        assert len(body) > PRESCAN_BYTES
        assert outcome(lambda b=body: validator.rows(b)) == outcome(
            lambda b=body: validator.adapter.validate_json(b)["rows"]
        )


def outcome(validate: Callable[[], list[dict[str, Any]]]) -> Any:
    try:
        return validate()
    except ValidationError as exc:
        return error_details(exc)


@pytest.mark.e2e  # a real `mlplatform serve` and abuser processes
def test_healthz_stays_fast_while_abused(built: Built, tmp_path: Path) -> None:
    """The issue's bound: /healthz p99 < 50 ms under abuse (bench/healthz_abuse.py shows it);
    asserted here with a generous margin for a shared test machine (today: seconds)."""
    env = make_env(built, tmp_path, **TOKENS)
    env.ledger.dispose()
    body = abuse.many_rows_body()
    b = env.ids["b"]
    with abuse.serve_process(
        env.settings.home, env.settings.projects_dir, TOKENS, tmp_path / "serve.log"
    ) as url:
        result = abuse.abuse(
            url,
            {
                "no-token 300 MB approve": lambda: abuse.unauthenticated_huge_decision(url, b),
                "10M-row predict": lambda: abuse.many_rows(url, READER_TOKEN, body),
                "1 MiB streamed approve": lambda: abuse.oversize_decision(url, b, APPROVER_TOKEN),
            },
            seconds=6.0,
        )
    assert result.healthz_errors == 0
    assert set(result.statuses["no-token 300 MB approve"]) == {401}
    assert set(result.statuses["10M-row predict"]) == {422}
    assert result.statuses["1 MiB streamed approve"].keys() <= {413, 0}
    assert result.p(0.99) < 1.0, f"p99 {result.p(0.99) * 1000:.0f} ms"


# -- refused means refused ------------------------------------------------------------------


def test_tampered_bundle_files_are_not_served(client: TestClient, env: Env) -> None:
    a = env.ids["a"]
    manifest = json.loads((env.bundle_dir("a") / "manifest.json").read_text())
    onnx = manifest["onnx_path"]
    url = f"/v1/bundles/{a}/files/{onnx}"
    assert client.get(url, headers=READER).status_code == 200
    restore = flip_byte(env.bundle_dir("a") / onnx)
    r = client.get(url, headers=READER)
    assert r.status_code == 409
    assert r.json()["detail"] == (
        f"bundle {a} refused: {onnx}: sha256 mismatch (the file was altered)"
    )
    other = next(p for p in manifest["files"] if p != onnx)
    assert client.get(f"/v1/bundles/{a}/files/{other}", headers=READER).status_code == 409
    assert client.get(f"/v1/bundles/{a}/files/manifest.json", headers=READER).status_code == 409
    restore()  # the file changes again: checked again, served again
    assert client.get(url, headers=READER).content == (env.bundle_dir("a") / onnx).read_bytes()
    manifest_file = env.bundle_dir("a") / "manifest.json"
    manifest_file.write_text(manifest_file.read_text().replace('"shop"', '"shoq"', 1))
    r = client.get(f"/v1/bundles/{a}/files/manifest.json", headers=READER)
    assert r.status_code == 409 and "does not match its bundle id" in r.json()["detail"]


def test_refused_production_bundle_makes_predict_503(env: Env) -> None:
    a = env.ids["a"]
    flip_byte(next(env.bundle_dir("a").rglob("model.onnx")))
    with TestClient(create_app(env.settings, poll_seconds=POLL)) as client:
        for r in (
            client.post(f"{P}/predict", json={"rows": env.rows[:1]}, headers=READER),
            client.post(f"{P}/predict", json={"rows": env.rows[:100]}, headers=READER),
            client.get(f"{P}/production", headers=READER),
        ):
            assert r.status_code == 503, r.text
            detail = r.json()["detail"]
            assert detail.startswith(f"production bundle {a} refused: ") and "sha256" in detail
        assert client.get("/v1/projects/other/production", headers=READER).status_code == 404


# -- no third-party code in our pages --------------------------------------------------------


def test_docs_are_off_by_default_and_on_with_a_csp(client: TestClient, env: Env) -> None:
    assert client.get("/docs").status_code == 404
    assert client.get("/redoc").status_code == 404
    assert client.get("/openapi.json").status_code == 200
    settings = env.settings.model_copy(update={"serving_docs": True})
    with TestClient(create_app(settings, poll_seconds=POLL)) as docs:
        for page in ("/docs", "/redoc"):
            r = docs.get(page)
            assert r.status_code == 200
            csp = r.headers["content-security-policy"]
            assert "default-src 'none'" in csp and "connect-src 'self'" in csp
            assert "script-src https://cdn.jsdelivr.net" in csp


def test_every_response_says_nosniff_and_pages_carry_a_csp(client: TestClient, env: Env) -> None:
    a = env.ids["a"]
    responses = [
        client.get("/healthz"),
        client.get("/metrics"),
        client.get("/v1/projects"),  # 401
        client.get("/v1/projects/nope/production", headers=READER),  # 404
        client.post(f"{P}/predict", json={"rows": env.rows[:1]}, headers=READER),  # fast path
        client.post(f"{P}/predict", json={"rows": [{"x": 1}]}, headers=READER),  # 422
        client.get(f"/v1/bundles/{a}/files/manifest.json", headers=READER),
        client.get("/review"),
        client.get("/openapi.json"),
    ]
    for r in responses:
        assert r.headers["x-content-type-options"] == "nosniff", r.request.url
        assert "default-src 'none'" in r.headers["content-security-policy"], r.request.url
    assert "script-src 'sha256-" in client.get("/review").headers["content-security-policy"]


@pytest.mark.e2e  # runs `mlplatform serve` as a process
def test_serve_with_a_bad_spec_fails_in_one_line(tmp_path: Path) -> None:
    projects = tmp_path / "projects"
    projects.mkdir()
    (projects / "bad.yaml").write_text("name: bad\ntask: nope\n")
    out = subprocess.run(
        [
            *(sys.executable, "-m", "mlplatform.cli", "serve", "--home", str(tmp_path / "home")),
            *("--projects", str(projects), "--port", str(abuse.free_port())),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode != 0
    lines = (out.stdout + out.stderr).strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"cannot serve: {projects / 'bad.yaml'}: task: ")
    assert "Traceback" not in out.stderr and "serving on" not in out.stdout


@pytest.mark.e2e  # runs `mlplatform serve` as a process
def test_serve_with_an_unreachable_ledger_fails_in_one_line(built: Built, tmp_path: Path) -> None:
    url = f"postgresql+psycopg2://ledger:pw-SECRET@127.0.0.1:{abuse.free_port()}/ledger"
    out = subprocess.run(
        [
            *(sys.executable, "-m", "mlplatform.cli", "serve", "--home", str(tmp_path / "home")),
            *("--projects", str(built.projects_dir), "--port", str(abuse.free_port())),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "MLPLATFORM_LEDGER_URL": url},
    )
    assert out.returncode != 0
    lines = (out.stdout + out.stderr).strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("cannot serve: cannot open the ledger at ")
    assert "pw-SECRET" not in lines[0]
