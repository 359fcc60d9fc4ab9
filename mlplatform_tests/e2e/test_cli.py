"""The command line as a user runs it: separate processes, real files, real Dagster instance."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from mlplatform_tests.conftest import ProjectFactory

CLI = [sys.executable, "-m", "mlplatform.cli"]


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


def test_demo_runs_end_to_end(tmp_path: Path) -> None:
    home = tmp_path / "home"
    result = cli("demo", "--months", "13", "--rows", "300", "--home", str(home))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "[13/13] churn__data 2024-01-01 ok" in out
    assert "[1/1] churn__train 2024-01-01 ok" in out
    bundle = Path(out.split("bundle:")[1].split()[0])
    report = Path(out.split("report:")[1].split()[0])
    assert bundle.parent == home / "bundles" and (bundle / "manifest.json").is_file()
    assert report.is_file() and report.suffix == ".html"
    assert "mlplatform ui" in out
    # the runs live in the persistent instance the web UI reads
    assert (home / "dagster" / "history" / "runs.db").is_file()


def test_materialize_reports_progress_and_failures(make_project: ProjectFactory) -> None:
    project = make_project("regression", months=4, rows=200)
    args = ["--home", str(project.home), "--projects", str(project.settings.projects_dir)]
    name = project.spec.name
    result = cli("materialize", name, "--assets", "data", *args)
    assert result.returncode == 0, result.stderr
    assert "[4/4]" in result.stdout and "4 run(s) succeeded, 0 failed" in result.stdout

    result = cli("status", name, "--json", *args)
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    by_asset: dict[str, set[str]] = {}
    for row in rows:
        by_asset.setdefault(row["asset"], set()).add(row["state"])
    assert by_asset[f"{name}/raw"] == {"materialized"}
    assert by_asset[f"{name}/features"] == {"materialized"}
    assert by_asset[f"{name}/bundle"] == {"missing"}
    assert {r["partition"] for r in rows if r["asset"] == f"{name}/raw"} == {
        f.stem for f in project.files
    }

    project.files[0].write_text("customer_id\nC1\n")
    (project.files[0].parent / "notes.txt").write_text("not a partition")
    result = cli("materialize", name, "--assets", "data", "--to", project.files[0].stem, *args)
    assert result.returncode == 1
    assert "FAILED" in result.stdout
    assert "missing column(s)" in result.stderr and project.files[0].name in result.stderr
    assert "notes.txt matches no partition key" in result.stderr

    result = cli("materialize", "nope", *args)
    assert result.returncode != 0 and name in result.stderr


def test_generate_is_seeded(tmp_path: Path) -> None:
    for home in ("a", "b"):
        result = cli("generate", "--months", "2", "--rows", "50", "--home", str(tmp_path / home))
        assert result.returncode == 0, result.stderr
    files_a = sorted((tmp_path / "a" / "landing" / "churn").iterdir())
    files_b = sorted((tmp_path / "b" / "landing" / "churn").iterdir())
    assert [f.name for f in files_a] == ["2023-01-01.csv", "2023-02-01.csv"]
    assert [f.read_bytes() for f in files_a] == [f.read_bytes() for f in files_b]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_ui_serves_the_asset_graph(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [*CLI, "ui", "--port", str(port), "--home", str(tmp_path / "home")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        body = None
        query = json.dumps({"query": "{ assetNodes { assetKey { path } } }"}).encode()
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                req = urllib.request.Request(
                    f"http://127.0.0.1:{port}/graphql",
                    data=query,
                    headers={"Content-Type": "application/json"},
                )
                with urllib.request.urlopen(req, timeout=5) as resp:
                    body = json.loads(resp.read())
                if body.get("data", {}).get("assetNodes"):
                    break
            except OSError:
                pass
            time.sleep(1)
        assert body is not None, proc.stdout.read().decode() if proc.poll() is not None else ""
        keys = {"/".join(n["assetKey"]["path"]) for n in body["data"]["assetNodes"]}
        assert {
            "churn/raw",
            "churn/features",
            "churn/model/logreg",
            "churn/model/forest",
            "churn/model/mlp",
            "churn/evaluation",
            "churn/bundle",
        } <= keys
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
