"""The real dagster-daemon on a temporary instance: a landed file becomes a bundle, unattended."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
import yaml

from mlplatform.examples.generate import generate_example
from mlplatform_tests.projects import variant
from mlplatform_tests.sensor_ticks import settled
from mlplatform_tests.waiting import wait_for

DAEMON = Path(sys.executable).with_name("dagster-daemon")


def log_tail(log: Path) -> str:
    text = log.read_text(errors="replace")[-3000:] if log.exists() else ""
    return f"daemon log tail:\n{text}"


@pytest.fixture
def platform(tmp_path: Path) -> Iterator[tuple[Path, Path, subprocess.Popen[bytes]]]:
    projects, home = tmp_path / "projects", tmp_path / "home"
    dagster_home = home / "dagster"  # the platform's instance: the definitions load into no other
    for folder in (projects, dagster_home):
        folder.mkdir(parents=True)
    spec = variant("binary", "live")
    spec["automation"] = {"enabled": True, "sensor_interval_seconds": 5}
    (projects / "live.yaml").write_text(yaml.safe_dump(spec))
    (dagster_home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    log = tmp_path / "daemon.log"
    env = {
        **os.environ,
        "DAGSTER_HOME": str(dagster_home),
        "MLPLATFORM_HOME": str(home),
        "MLPLATFORM_PROJECTS_DIR": str(projects),
    }
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(DAEMON), "run", "-m", "mlplatform.definitions"],
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield home, log, proc
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def test_daemon_turns_a_landed_file_into_a_bundle(
    platform: tuple[Path, Path, subprocess.Popen[bytes]],
) -> None:
    home, log, proc = platform
    landing = home / "landing" / "live"
    files = generate_example(landing, months=4, rows_per_month=200)
    newest = files[-1]
    parked = newest.read_bytes()
    newest.unlink()
    features = home / "assets" / "live" / "features"
    ingested_at = time.time()

    def history_ingested() -> bool:
        return features.is_dir() and len(list(features.glob("*.parquet"))) == 3

    wait_for(
        "the landing sensor to ingest the history",
        history_ingested,
        180,
        interval=2,
        details=lambda: log_tail(log),
    )
    # The automation sensor must record where things stand before the newest month lands.
    instance = dg.DagsterInstance.from_config(str(home / "dagster"))
    try:
        wait_for(
            "an automation tick after the history's runs ended",
            lambda: settled(instance, "live", ingested_at, 1, ("automation",)),
            120,
            interval=1,
            details=lambda: log_tail(log),
        )
    finally:
        instance.dispose()
    newest.write_bytes(parked)
    bundles = home / "bundles"

    def bundle_published() -> bool:
        return bundles.is_dir() and any((b / "manifest.json").is_file() for b in bundles.iterdir())

    wait_for(
        "automation to train, evaluate and publish a bundle",
        bundle_published,
        240,
        interval=2,
        details=lambda: log_tail(log),
    )
    assert proc.poll() is None
    (bundle,) = list(bundles.iterdir())
    manifest = yaml.safe_load((bundle / "manifest.json").read_text())
    assert manifest["cutoff"] == newest.stem
    assert manifest["training_manifest"]["partitions"] == [f.stem for f in files[:3]]
