"""The command line as a user runs it: separate processes, real files, real Dagster instance."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

from mlplatform_tests.projects import ProjectFactory
from mlplatform_tests.waiting import wait_for

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
        query = json.dumps({"query": "{ assetNodes { assetKey { path } } }"}).encode()

        def asset_graph() -> dict[str, Any] | None:
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
            req = urllib.request.Request(
                f"http://127.0.0.1:{port}/graphql",
                data=query,
                headers={"Content-Type": "application/json"},
            )
            try:
                with urllib.request.urlopen(req, timeout=5) as resp:
                    body: dict[str, Any] = json.loads(resp.read())
            except OSError:
                return None
            return body if body.get("data", {}).get("assetNodes") else None

        body = wait_for("the UI to serve the asset graph", asset_graph, 120, interval=1)
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


def run_count(home: Path) -> int:
    import sqlite3

    with contextlib.closing(sqlite3.connect(home / "dagster" / "history" / "runs.db")) as db:
        return int(db.execute("select count(*) from runs").fetchone()[0])


def bundle_ids(home: Path) -> set[str]:
    bundles = home / "bundles"
    return {p.name for p in bundles.iterdir()} if bundles.is_dir() else set()


def break_target(path: Path) -> None:
    """Empty the target column of every row: the raw ``target`` check fails."""
    lines = path.read_text().splitlines()
    at = lines[0].split(",").index("churned")
    rows = [",".join("" if i == at else c for i, c in enumerate(ln.split(","))) for ln in lines[1:]]
    path.write_text("\n".join([lines[0], *rows]) + "\n")


def test_materialize_does_what_status_says(make_project: ProjectFactory) -> None:
    project = make_project("binary", months=5, rows=250)
    args = ["--home", str(project.home), "--projects", str(project.settings.projects_dir)]
    name, home = project.spec.name, project.home
    newest = project.files[-1].stem

    # a window that is not materialized: one line naming the partitions, no stack trace
    result = cli("materialize", name, "--assets", "train", *args)
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert f"cutoff {newest} not trained" in result.stderr
    assert all(f.stem in result.stderr for f in project.files[1:])
    assert "Traceback" not in result.stderr and "FileNotFoundError" not in result.stderr

    result = cli("materialize", name, *args)
    assert result.returncode == 0, result.stderr
    assert f"[1/1] {name}__train {newest} ok" in result.stdout
    summary = result.stdout.split("summary")[1]
    assert f"cutoff {newest}: winner " in summary and "roc_auc" in summary
    assert "(min 0.55) passed" in summary
    report = Path(summary.split("report: ")[1].split()[0])
    bundle = Path(summary.split("bundle: ")[1].split()[0])
    assert report.is_file() and (bundle / "manifest.json").is_file()
    runs, bundles = run_count(home), bundle_ids(home)

    # nothing is stale: no run, no bundle
    result = cli("materialize", name, *args)
    assert result.returncode == 0, result.stderr
    assert "nothing is stale" in result.stdout and "[1/" not in result.stdout
    assert run_count(home) == runs and bundle_ids(home) == bundles

    # a failed raw month stops the cutoff that reads it: named, with the check's reason
    good = project.files[-1].read_text()
    break_target(project.files[-1])
    result = cli("materialize", name, *args)
    assert result.returncode == 1
    assert f"{name}__data {newest} FAILED" in result.stdout
    assert f"{name}/raw[{newest}] failed target: target column 'churned'" in result.stderr
    assert "Traceback" not in result.stderr and " - ERROR - " not in result.stderr
    assert bundle_ids(home) == bundles
    result = cli("status", name, "--json", *args)
    rows = {(r["asset"], r["partition"]): r for r in map(json.loads, result.stdout.splitlines())}
    raw = rows[(f"{name}/raw", newest)]
    assert raw["state"] == "failed_check" and "target column 'churned'" in raw["reason"]
    # with -v, Dagster's own log of the failure is shown too
    result = cli("-v", "materialize", name, "--assets", "data", "--from", newest, *args)
    assert result.returncode == 1 and " - ERROR - " in result.stderr

    # the file fixed: its data partition is rebuilt; the cutoff's inputs are as before
    project.files[-1].write_text(good)
    result = cli("materialize", name, *args)
    assert result.returncode == 0, result.stderr
    assert f"{name}__data {newest} ok" in result.stdout and "__train" not in result.stdout
    assert f"cutoff {newest}: up to date" in result.stdout

    # --force redoes everything in range
    result = cli("materialize", name, "--force", "--assets", "train", *args)
    assert result.returncode == 0, result.stderr
    assert f"[1/1] {name}__train {newest} ok" in result.stdout
    assert run_count(home) > runs
