"""``up``, ``down`` and ``status`` of the stack (the CLI and the tests call these)."""

from __future__ import annotations

import os
import shutil
import socket
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from pydantic import SecretStr

from mlplatform.deploy import DAGSTER_YAML, WORKSPACE_YAML
from mlplatform.stack import processes, services
from mlplatform.stack.config import (
    DATABASES,
    DB_USER,
    PROCESS_SERVICES,
    SERVICES,
    StackConfig,
    save_config,
    service_env,
)
from mlplatform.stack.postgres import Cluster
from mlplatform.stack.processes import ProcessRecord, StackError

FIRST = ("mlflow", "code_server", "serving")
"""Started together first; the webserver and the daemon follow once the code server answers."""
Notify = Callable[[str], None]


@dataclass(frozen=True)
class ServiceStatus:
    service: str
    state: str  # running | unhealthy | stopped
    pid: int | None
    port: int | None
    url: str
    log: str

    def to_json(self) -> dict[str, object]:
        return dict(self.__dict__)


def cluster(config: StackConfig) -> Cluster:
    return Cluster(
        config.postgres_dir,
        host=config.connect_host,
        port=int(config.port("postgres") or 0),
        user=DB_USER,
        listen=config.host,
    )


def record(config: StackConfig, service: str) -> ProcessRecord | None:
    return ProcessRecord.load(config.record_file(service))


def _running_record(config: StackConfig, service: str) -> ProcessRecord | None:
    rec = record(config, service)
    return rec if rec is not None and processes.is_running(rec) else None


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def _check_port(config: StackConfig, service: str) -> None:
    port = config.port(service)
    if port is not None and not _port_free(config.host, port):
        raise StackError(
            f"{service}: port {port} on {config.host} is in use by another program; pick "
            f"another with `mlplatform stack up --{service.replace('_', '-')}-port PORT`"
        )


def prepare(config: StackConfig) -> None:
    """Folders, the saved config, and the production instance files in DAGSTER_HOME."""
    for folder in (config.stack_dir, config.dagster_home, config.mlflow_artifacts):
        folder.mkdir(parents=True, exist_ok=True)
    (config.stack_dir / "logs").mkdir(exist_ok=True)
    save_config(config)
    shutil.copyfile(DAGSTER_YAML, config.dagster_home / "dagster.yaml")
    shutil.copyfile(WORKSPACE_YAML, config.dagster_home / "workspace.yaml")


def start_postgres(config: StackConfig, notify: Notify = print) -> bool:
    """initdb (once), start, create the databases; True if this call started the server."""
    pg = cluster(config)
    if not pg.initialized:
        notify(f"postgres: initdb {pg.data}")
        pg.init()
    started = False
    if not pg.running():
        _check_port(config, "postgres")
        pg.start()
        started = True
    processes.wait_until("postgres to accept connections", pg.ready, 60, pg.log)
    created = pg.create_databases(DATABASES)
    if created:
        notify(f"postgres: created database(s) {', '.join(created)}")
    return started


def start_service(
    config: StackConfig, service: str, base_env: Mapping[str, str] | None = None
) -> ProcessRecord:
    """Start one service unless it is running (then return its record); no waiting."""
    running = _running_record(config, service)
    if running is not None:
        return running
    _check_port(config, service)
    env = service_env(config, cluster(config).password, service, base_env or os.environ)
    return processes.start(
        service,
        services.command(service, config),
        env,
        config.log_file(service),
        config.record_file(service),
        cwd=config.stack_dir,
    )


def wait_healthy(
    config: StackConfig,
    service: str,
    timeout: float,
    base_env: Mapping[str, str] | None = None,
) -> None:
    """Wait (bounded) until a started service passes its health check."""
    rec = record(config, service)
    env = service_env(config, cluster(config).password, service, base_env or os.environ)
    interval = 2.0 if service in ("code_server", "daemon") else 0.5  # these probe by subprocess
    processes.wait_until(
        f"{service} to become healthy",
        lambda: services.healthy(service, config, env, rec),
        timeout,
        config.log_file(service),
        alive=(lambda: rec is not None and processes.is_running(rec)),
        interval=interval,
    )


def restart(
    config: StackConfig,
    service: str,
    timeout: float = 120,
    base_env: Mapping[str, str] | None = None,
) -> ProcessRecord:
    """Stop one service (if it runs), start it again and wait until it is healthy."""
    rec = record(config, service)
    if rec is not None:
        processes.stop(rec)
    rec = start_service(config, service, base_env)
    wait_healthy(config, service, timeout, base_env)
    return rec


def up(
    config: StackConfig,
    base_env: Mapping[str, str] | None = None,
    timeout: float = 240.0,
    notify: Notify = print,
) -> list[ServiceStatus]:
    """Start every service that is not running and wait until all are healthy.

    ``base_env`` (default: this process's environment) is what the services inherit besides
    the stack's settings, e.g. the serving tokens. If anything fails, what this call started
    is stopped again and StackError says which service and shows the tail of its log.
    """
    deadline = time.monotonic() + timeout
    prepare(config)
    started_pg = start_postgres(config, notify)
    started: list[str] = []

    def left() -> float:
        return max(5.0, deadline - time.monotonic())

    try:
        for wave in (FIRST, tuple(s for s in PROCESS_SERVICES if s not in FIRST)):
            for service in wave:
                if _running_record(config, service) is None:
                    rec = start_service(config, service, base_env)
                    started.append(service)
                    notify(f"{service}: started (pid {rec.pid}), log {rec.log}")
            waiting = ("code_server",) if wave == FIRST else wave
            for service in waiting:
                wait_healthy(config, service, left(), base_env)
                notify(f"{service}: healthy")
        for service in FIRST:
            if service != "code_server":
                wait_healthy(config, service, left(), base_env)
                notify(f"{service}: healthy")
    except BaseException:
        for service in reversed(started):
            leftover = record(config, service)
            if leftover is not None:
                processes.stop(leftover)
        if started_pg:
            cluster(config).stop()
        raise
    return status(config, probe=False)


def down(config: StackConfig, notify: Notify = print) -> dict[str, list[int]]:
    """Stop exactly the processes ``up`` recorded (in reverse order), then PostgreSQL.
    Returns the pids signalled per service (``postgres``: the postmaster's)."""
    stopped: dict[str, list[int]] = {}
    for service in reversed(PROCESS_SERVICES):
        rec = record(config, service)
        if rec is None:
            continue
        pids = processes.stop(rec)  # the record stays: status shows the last pid's log
        stopped[service] = pids
        notify(f"{service}: " + (f"stopped (pids {pids})" if pids else "was not running"))
    pg = cluster(config)
    if pg.initialized:
        pid = pg.pid()
        if pg.stop():
            stopped["postgres"] = [pid] if pid else []
            notify(f"postgres: stopped (pid {pid})")
    return stopped


def status(config: StackConfig, probe: bool = True) -> list[ServiceStatus]:
    """Each service: running / unhealthy (running but failing its health check) / stopped.
    With ``probe``, the health checks run (in parallel); else running means alive."""
    pg = cluster(config)
    pg_running = pg.initialized and pg.running()
    password = pg.password if pg.initialized else SecretStr("")
    records = {s: _running_record(config, s) for s in PROCESS_SERVICES}

    def check(service: str) -> bool:
        if service == "postgres":
            return pg_running and (not probe or pg.ready())
        rec = records[service]
        if rec is None:
            return False
        env = service_env(config, password, service, os.environ)
        return not probe or services.healthy(service, config, env, rec)

    with ThreadPoolExecutor(max_workers=len(SERVICES)) as pool:
        healthy = dict(zip(SERVICES, pool.map(check, SERVICES), strict=True))
    rows = []
    for service in SERVICES:
        if service == "postgres":
            running, pid = pg_running, pg.pid() if pg_running else None
        else:
            rec = records[service]
            running, pid = rec is not None, rec.pid if rec else None
        state = "running" if healthy[service] else ("unhealthy" if running else "stopped")
        rows.append(
            ServiceStatus(
                service,
                state,
                pid,
                config.port(service),
                config.url(service),
                str(config.log_file(service)),
            )
        )
    return rows


def leftover_pids(config: StackConfig) -> dict[str, list[int]]:
    """Processes of ours still alive per service (after ``down``: none)."""
    out = {}
    for service in PROCESS_SERVICES:
        rec = record(config, service)
        if rec is not None and rec.start_ticks >= 0:
            members = processes.group_members(rec)
            if members:
                out[service] = members
    pid = cluster(config).pid()
    if pid is not None and processes.alive(pid):
        out["postgres"] = [pid]
    return out
