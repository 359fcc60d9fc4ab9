"""Each service of the stack: its command line and its health check."""

from __future__ import annotations

import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from mlplatform.stack.config import LOCATION_NAME, StackConfig
from mlplatform.stack.processes import ProcessRecord


def executable(name: str) -> str:
    """A console script of this Python environment (next to ``sys.executable``), else PATH."""
    local = Path(sys.executable).with_name(name)
    if local.is_file():
        return str(local)
    found = shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"{name} not found next to {sys.executable} or on PATH")
    return found


def command(service: str, config: StackConfig) -> list[str]:
    """The command line of a service (secrets travel in its environment, never here)."""
    host, port = config.host, str(config.port(service))
    workspace = str(config.dagster_home / "workspace.yaml")
    if service == "mlflow":
        return [
            executable("mlflow"),
            "server",
            "--host",
            host,
            "--port",
            port,
            "--workers",
            "1",
            "--serve-artifacts",
            "--artifacts-destination",
            str(config.mlflow_artifacts),
        ]
    if service == "code_server":
        return [
            executable("dagster"),
            "code-server",
            "start",
            "-h",
            host,
            "-p",
            port,
            "-m",
            "mlplatform.definitions",
            "--location-name",
            LOCATION_NAME,
        ]
    if service == "webserver":
        return [executable("dagster-webserver"), "-h", host, "-p", port, "-w", workspace]
    if service == "daemon":
        return [executable("dagster-daemon"), "run", "-w", workspace]
    if service == "serving":
        return [executable("mlplatform"), "serve", "--host", host, "--port", port]
    raise ValueError(f"no such service: {service}")


def http_ok(url: str, timeout: float = 3.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return 200 <= response.status < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False


def command_ok(argv: list[str], env: Mapping[str, str], timeout: float = 60.0) -> bool:
    try:
        result = subprocess.run(
            argv, env=dict(env), capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired:
        return False
    return result.returncode == 0


def healthy(
    service: str, config: StackConfig, env: Mapping[str, str], record: ProcessRecord | None
) -> bool:
    """One health probe: MLflow ``/health``, the code server's gRPC health check, the
    webserver's ``/server_info``, fresh daemon heartbeats, the serving app's ``/healthz``."""
    if service == "mlflow":
        return http_ok(f"{config.url('mlflow')}/health")
    if service == "code_server":
        return command_ok(
            [
                executable("dagster"),
                "api",
                "grpc-health-check",
                "-h",
                config.connect_host,
                "-p",
                str(config.port("code_server")),
            ],
            env,
        )
    if service == "webserver":
        return http_ok(f"{config.url('webserver')}/server_info")
    if service == "daemon":
        since = record.started_at if record is not None else 0.0
        return command_ok([sys.executable, "-m", "mlplatform.stack.heartbeat", str(since)], env)
    if service == "serving":
        return http_ok(f"{config.url('serving')}/healthz")
    raise ValueError(f"no such service: {service}")
