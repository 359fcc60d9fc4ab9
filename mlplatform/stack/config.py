"""Where the stack lives and how its services find each other (pure: paths, ports, env)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from pydantic import SecretStr

SERVICES = ("postgres", "mlflow", "code_server", "webserver", "daemon", "serving")
"""Every service of the stack, in start order (``down`` stops them in reverse)."""
PROCESS_SERVICES = SERVICES[1:]
"""Services started as our own detached processes (PostgreSQL is run by ``pg_ctl``)."""
DEFAULT_PORTS = {
    "postgres": 5433,  # not 5432: a system PostgreSQL may already listen there
    "mlflow": 5000,
    "code_server": 4000,
    "webserver": 3000,
    "serving": 8000,
}
DATABASES = ("dagster", "mlflow", "mlplatform")
"""One cluster, three databases: Dagster's storage, MLflow's backend store, and ours (the
promotion ledger and the hyperparameter search storage)."""
DB_USER = "mlplatform"
LOCATION_NAME = "mlplatform"


@dataclass(frozen=True)
class StackConfig:
    """A stack on this machine: its home, projects, bind address, ports and run limit."""

    home: Path
    projects_dir: Path
    host: str = "127.0.0.1"
    ports: Mapping[str, int] = field(default_factory=lambda: dict(DEFAULT_PORTS))
    max_concurrent_runs: int = 4

    @property
    def stack_dir(self) -> Path:
        return self.home / "stack"

    @property
    def postgres_dir(self) -> Path:
        return self.stack_dir / "postgres"

    @property
    def dagster_home(self) -> Path:
        return self.stack_dir / "dagster"

    @property
    def mlflow_artifacts(self) -> Path:
        return self.stack_dir / "mlflow-artifacts"

    @property
    def state_file(self) -> Path:
        return self.stack_dir / "stack.json"

    def log_file(self, service: str) -> Path:
        if service == "postgres":
            return self.postgres_dir / "postgres.log"
        return self.stack_dir / "logs" / f"{service}.log"

    def record_file(self, service: str) -> Path:
        return self.stack_dir / "run" / f"{service}.json"

    @property
    def connect_host(self) -> str:
        """The address clients on this machine use (a wildcard bind is reached locally)."""
        return "127.0.0.1" if self.host in ("0.0.0.0", "", "*") else self.host

    def port(self, service: str) -> int | None:
        return self.ports.get(service)

    def url(self, service: str) -> str:
        """What a person opens or a client connects to for a service."""
        port = self.port(service)
        if service == "postgres":
            return f"postgresql://{DB_USER}@{self.connect_host}:{port}/"
        if service == "code_server":
            return f"grpc://{self.connect_host}:{port}"
        if service == "daemon":
            return ""
        return f"http://{self.connect_host}:{port}"

    def database_url(
        self, password: SecretStr, database: str, driver: str = "postgresql+psycopg2"
    ) -> str:
        """SQLAlchemy URL (psycopg2: SQLAlchemy 2.1 maps a bare ``postgresql://`` to psycopg 3).
        It holds the password: for a process's environment, never for a message."""
        secret = password.get_secret_value()
        return (
            f"{driver}://{DB_USER}:{secret}@{self.connect_host}:{self.port('postgres')}/{database}"
        )

    def to_json(self) -> dict[str, object]:
        data = asdict(self)
        data.update(
            home=str(self.home), projects_dir=str(self.projects_dir), ports=dict(self.ports)
        )
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> StackConfig:
        ports = {**DEFAULT_PORTS, **dict(data.get("ports") or {})}  # type: ignore[call-overload]
        return cls(
            home=Path(str(data["home"])),
            projects_dir=Path(str(data["projects_dir"])),
            host=str(data.get("host", "127.0.0.1")),
            ports=ports,
            max_concurrent_runs=int(data.get("max_concurrent_runs", 4)),  # type: ignore[call-overload]
        )

    def with_overrides(
        self,
        host: str | None = None,
        ports: Mapping[str, int | None] | None = None,
        max_concurrent_runs: int | None = None,
        projects_dir: Path | None = None,
    ) -> StackConfig:
        """This config with every given (not None) value replaced."""
        merged = {**self.ports, **{k: v for k, v in (ports or {}).items() if v is not None}}
        unknown = set(merged) - set(DEFAULT_PORTS)
        if unknown:
            raise ValueError(f"unknown service(s) {sorted(unknown)}; ports: {list(DEFAULT_PORTS)}")
        return replace(
            self,
            host=host if host is not None else self.host,
            ports=merged,
            max_concurrent_runs=(
                max_concurrent_runs if max_concurrent_runs is not None else self.max_concurrent_runs
            ),
            projects_dir=projects_dir if projects_dir is not None else self.projects_dir,
        )


def load_config(home: Path, projects_dir: Path) -> StackConfig:
    """The config ``up`` saved under ``home`` (ports, host, ...), else the defaults."""
    home = home.resolve()
    default = StackConfig(home=home, projects_dir=projects_dir.resolve())
    if not default.state_file.is_file():
        return default
    saved = StackConfig.from_json(json.loads(default.state_file.read_text(encoding="utf-8")))
    return replace(saved, home=home)


def save_config(config: StackConfig) -> None:
    config.stack_dir.mkdir(parents=True, exist_ok=True)
    tmp = config.state_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(config.to_json(), indent=2), encoding="utf-8")
    os.replace(tmp, config.state_file)


def platform_env(config: StackConfig, password: SecretStr) -> dict[str, str]:
    """What every service (and a client of the stack) needs: the platform's settings pointed at
    the stack's MLflow server and PostgreSQL databases, and Dagster's production instance."""
    host = config.connect_host
    ours = config.database_url(password, "mlplatform")
    return {
        "MLPLATFORM_HOME": str(config.home),
        "MLPLATFORM_PROJECTS_DIR": str(config.projects_dir),
        "MLPLATFORM_MLFLOW_TRACKING_URI": config.url("mlflow"),
        "MLPLATFORM_LEDGER_URL": ours,
        "MLPLATFORM_SEARCH_URL": ours,
        "DAGSTER_HOME": str(config.dagster_home),
        "MLPLATFORM_DAGSTER_HOME_DIR": str(config.dagster_home),
        "DAGSTER_PG_HOST": host,
        "DAGSTER_PG_PORT": str(config.port("postgres")),
        "DAGSTER_PG_USER": DB_USER,
        "DAGSTER_PG_PASSWORD": password.get_secret_value(),
        "DAGSTER_PG_DB": "dagster",
        "DAGSTER_MAX_CONCURRENT_RUNS": str(config.max_concurrent_runs),
        "DAGSTER_CODE_SERVER_HOST": host,
        "DAGSTER_CODE_SERVER_PORT": str(config.port("code_server")),
    }


def service_env(
    config: StackConfig, password: SecretStr, service: str, base: Mapping[str, str]
) -> dict[str, str]:
    """The environment of one service: ``base`` (PATH, tokens, ...) plus the platform's."""
    env = {**base, **platform_env(config, password)}
    if service == "mlflow":  # by environment, so the password is not on a command line
        env["MLFLOW_BACKEND_STORE_URI"] = config.database_url(password, "mlflow")
        # MLflow's job runner (GenAI jobs) starts ~8 processes we never use
        env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env
