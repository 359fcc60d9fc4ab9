"""The serving image's command, run outside Docker with only what the image installs.

The CMD of docker/Dockerfile.serving is started as ``python -S -m <command>`` with a site
folder that holds only the distributions of docker/requirements-serving.lock and our package
(symlinks), so a module the image does not have (dagster, sklearn, torch, mlflow, pandas, ...)
cannot be imported, exactly as in the image. It must answer its health route.
"""

from __future__ import annotations

import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import httpx
import pytest

from mlplatform_tests.docker import files

SERVING_LOCK = files.DOCKER / "requirements-serving.lock"
ABSENT = ("dagster", "sklearn", "torch", "mlflow", "pandas", "typer")


def locked(lock: Path) -> dict[str, str]:
    """Normalised distribution name -> pinned version."""
    pins = {}
    for line in lock.read_text(encoding="utf-8").splitlines():
        m = re.match(r"^([A-Za-z0-9_.\-]+)==(\S+)", line)
        if m:
            pins[re.sub(r"[-_.]+", "-", m.group(1)).lower()] = m.group(2)
    return pins


def image_site(target: Path) -> Path:
    """A site folder with only the serving lock's distributions (as installed here) and
    the mlplatform package: symlinks to their top-level files and folders."""
    target.mkdir()
    for name, version in locked(SERVING_LOCK).items():
        dist = metadata.distribution(name)
        assert dist.version == version, f"{name}: {dist.version} installed, {version} locked"
        root = Path(str(dist.locate_file("")))
        tops = {Path(str(f)).parts[0] for f in dist.files or [] if not str(f).startswith("..")}
        for top in tops - {"__pycache__"}:
            link = target / top
            if not link.exists():
                link.symlink_to(root / top)
    (target / "mlplatform").symlink_to(files.ROOT / "mlplatform")
    return target


def image_command(command: list[str]) -> list[str]:
    """``command`` (a console script) run as a module by this interpreter without its
    site-packages; PYTHONPATH must name the image's site folder."""
    return [sys.executable, "-S", "-m", command[0].replace("-", "_"), *command[1:]]


@pytest.mark.e2e  # starts the serving command
def test_serving_cmd_runs_with_only_the_serving_lock(tmp_path: Path) -> None:
    command = files.cmd(files.SERVING_DOCKERFILE)
    assert command[0] == "uvicorn" and "--factory" in command
    assert command[command.index("--factory") + 1] == "mlplatform.serving.app:app_from_env"
    site = image_site(tmp_path / "site")
    image_env = files.env(files.SERVING_DOCKERFILE)
    projects = files.arg_defaults(files.SERVING_DOCKERFILE)["PROJECTS"]
    env = files.base_env(
        PYTHONPATH=str(site),
        MLPLATFORM_HOME=str(tmp_path / "home"),
        MLPLATFORM_PROJECTS_DIR=str(files.ROOT / projects),
        MLPLATFORM_LEDGER_URL=f"sqlite:///{tmp_path / 'ledger.db'}",
        MLPLATFORM_READER_TOKENS='{"ci": "reader-token"}',
        MLPLATFORM_APPROVER_TOKENS='{"ann": "approver-token"}',
    )
    assert image_env["MLPLATFORM_HOME"] == "/data" and "MLPLATFORM_PROJECTS_DIR" in image_env

    # The control: on that site, what the image lacks cannot be imported.
    for module in ABSENT:
        probe = subprocess.run(
            [sys.executable, "-S", "-c", f"import {module}"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert probe.returncode != 0 and "ModuleNotFoundError" in probe.stderr, module

    port = files.free_port()
    argv = files.with_option(files.with_option(command, "--port", str(port)), "--host", "127.0.0.1")
    with files.running(image_command(argv), env, tmp_path / "serving.log", tmp_path) as p:

        def healthy() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        files.wait_until("the serving API to answer /healthz", healthy, 60, p)
        body = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).json()
        assert body["status"] in ("ok", "degraded") and "churn" in body["projects"]
        r = httpx.get(f"http://127.0.0.1:{port}/v1/projects", timeout=5)
        assert r.status_code == 401  # tokens from the environment are in force
        r = httpx.get(
            f"http://127.0.0.1:{port}/v1/projects",
            headers={"Authorization": "Bearer reader-token"},
            timeout=5,
        )
        assert r.status_code == 200 and "churn" in r.text
        assert p.proc.poll() is None

    # The image writes and reads its prediction log (Parquet) with what it installs.
    script = (
        "import datetime as dt, sys\n"
        "from mlplatform.prediction_log import LogStore, log_url\n"
        "from mlplatform.serving.log_batches import write_columns\n"
        "from mlplatform.serving.since_promotion import read_log, traffic\n"
        "store = LogStore(log_url(sys.argv[1]))\n"
        "now = dt.datetime.now(dt.UTC)\n"
        "columns = {'time': [now.timestamp()], 'request': ['r'], 'row': [0],\n"
        "           'latency_ms': [1.0], 'label': ['yes']}\n"
        "write_columns(store, 'churn', now.date(), 'n', columns)\n"
        "print(traffic(read_log(store, 'churn', now - dt.timedelta(hours=1))).rows)\n"
    )
    probe = subprocess.run(
        [sys.executable, "-S", "-c", script, str(tmp_path / "log")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert probe.returncode == 0 and probe.stdout.strip() == "1", probe.stderr


def test_serving_healthchecks_use_the_health_route() -> None:
    final = files.final_stage(files.SERVING_DOCKERFILE)
    (check,) = [i for i in final if i.keyword == "HEALTHCHECK"]
    assert "/healthz" in check.args and ":8000/" in check.args
    compose_check = files.compose()["services"]["serving"]["healthcheck"]["test"]
    assert any("127.0.0.1:8000/healthz" in part for part in compose_check)


def test_serving_lock_has_no_platform_library() -> None:
    names = set(locked(SERVING_LOCK))
    assert {"fastapi", "uvicorn", "onnxruntime", "sqlalchemy", "psycopg2-binary"} <= names
    assert "pyarrow" in names  # the prediction log is Parquet
    platform = {*ABSENT, "scikit-learn", "mlflow-skinny", "dagster-webserver"}
    assert not platform & names
