"""Platform settings: one pydantic-settings object, read only when asked for."""

from __future__ import annotations

import json
import re
from pathlib import Path

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

from mlplatform.prediction_log import LogStore, log_url

EXAMPLES_DIR = Path(__file__).parent / "examples"


class Settings(BaseSettings):
    """Where the platform keeps its state. Every field can be set as ``MLPLATFORM_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="MLPLATFORM_", frozen=True)

    home: Path = Field(default=Path(".mlplatform"), description="Root folder of all local state.")
    projects_dir: Path = Field(
        default=EXAMPLES_DIR, description="Folder of project spec YAML files (*.yaml)."
    )
    mlflow_tracking_uri: str | None = Field(
        default=None,
        repr=False,  # may hold a password
        description="MLflow tracking URI; default: SQLite file under home.",
    )
    ledger_url: str | None = Field(
        default=None,
        repr=False,  # may hold a password
        description="SQLAlchemy URL of the promotion ledger; default: SQLite file under home.",
    )
    search_url: str | None = Field(
        default=None,
        repr=False,  # may hold a password
        description="SQLAlchemy URL of the hyperparameter-search (Optuna) database; "
        "default: SQLite file under home.",
    )
    dagster_home_dir: Path | None = Field(
        default=None,
        description="DAGSTER_HOME the CLI uses (e.g. a team stack's PostgreSQL instance); "
        "default: $MLPLATFORM_HOME/dagster with the embedded SQLite instance.",
    )
    reader_tokens: dict[str, SecretStr] = Field(
        default_factory=dict,
        description="identity -> token of API readers (JSON in MLPLATFORM_READER_TOKENS).",
    )
    approver_tokens: dict[str, SecretStr] = Field(
        default_factory=dict,
        description="identity -> token of approvers (JSON in MLPLATFORM_APPROVER_TOKENS).",
    )
    serving_docs: bool = Field(
        default=False,
        description="Serve /docs and /redoc; they load Swagger UI/ReDoc from the jsDelivr CDN.",
    )
    serve_url: str | None = Field(
        default=None,
        description="URL of the serving API; with ``token``, the CLI records approvals, "
        "rejections and rollbacks through it, under the token's identity.",
    )
    token: SecretStr | None = Field(
        default=None, description="The caller's API token (MLPLATFORM_TOKEN)."
    )
    prediction_log_url: str | None = Field(
        default=None,
        description="Where serving writes the prediction log and monitoring reads it: a "
        "folder, file:///path or s3://bucket/prefix (credentials, region and endpoint from "
        "AWS_* variables); default: $MLPLATFORM_HOME/prediction_log.",
    )

    @field_validator("prediction_log_url")
    @classmethod
    def _log_url(cls, value: str | None) -> str | None:
        return log_url(value) if value and value.strip() else None

    @property
    def dagster_home(self) -> Path:
        return self.dagster_home_dir or self.home / "dagster"

    @property
    def assets_dir(self) -> Path:
        return self.home / "assets"

    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    @property
    def bundles_dir(self) -> Path:
        return self.home / "bundles"

    @property
    def staging_dir(self) -> Path:
        return self.home / "staging"

    @property
    def reports_dir(self) -> Path:
        return self.home / "reports"

    @property
    def landing_root(self) -> Path:
        return self.home / "landing"

    @property
    def tracking_uri(self) -> str:
        if self.mlflow_tracking_uri:
            return self.mlflow_tracking_uri
        return f"sqlite:///{(self.home / 'mlflow' / 'mlflow.db').resolve()}"

    @property
    def ledger(self) -> str:
        return self.ledger_url or f"sqlite:///{(self.home / 'ledger.db').resolve()}"

    @property
    def search(self) -> str:
        return self.search_url or f"sqlite:///{(self.home / 'search.db').resolve()}"

    @property
    def prediction_log(self) -> LogStore:
        """The prediction log's store (under home unless ``prediction_log_url`` says)."""
        return LogStore.at(self.prediction_log_url, self.home)

    @property
    def mlflow_artifacts_dir(self) -> Path:
        return self.home / "mlflow" / "artifacts"


def instance_problem(settings: Settings, dagster_home: str | None) -> str | None:
    """Why a Dagster process whose ``DAGSTER_HOME`` is ``dagster_home`` must not load this
    platform's definitions (its runs would be recorded in another instance than the one the
    platform's own commands read, while its assets are written into the platform's home);
    None when it is the platform's instance. One line, saying what to run instead."""
    expected = settings.dagster_home.resolve()
    if dagster_home and Path(dagster_home).expanduser().resolve() == expected:
        return None
    actual = dagster_home or "unset (Dagster would use a temporary instance)"
    return (
        f"mlplatform: DAGSTER_HOME is {actual}, not this platform's instance {expected}: "
        f"run `mlplatform ui`, or export DAGSTER_HOME={expected}"
    )


class ConfigError(ValueError):
    """A setting is malformed. The message names the variable and the problem, never the value."""


def _variable(field: object) -> str:
    return f"MLPLATFORM_{str(field).upper()}"


def _problems(exc: ValidationError | SettingsError) -> list[str]:
    """One phrase per problem, built from locations and pydantic's type messages only."""
    if isinstance(exc, SettingsError):
        found = re.search(r'field "([^"]+)"', str(exc))
        name = _variable(found.group(1)) if found else "an MLPLATFORM_* variable"
        cause = exc.__cause__
        reason = (
            f"not valid JSON ({cause.msg} at char {cause.pos})"
            if isinstance(cause, json.JSONDecodeError)
            else "cannot be parsed"
        )
        return [f"{name} is {reason}"]
    problems = []
    for error in exc.errors(include_url=False, include_input=False, include_context=False):
        field, *inside = error["loc"] or ("?",)
        where = "".join(f"[{part!r}]" for part in inside)
        problems.append(f"{_variable(field)}{where}: {error['msg']}")
    return problems


HINTS = {
    "MLPLATFORM_READER_TOKENS": 'a JSON object of identity -> token, e.g. {"app": "<token>"}',
    "MLPLATFORM_APPROVER_TOKENS": 'a JSON object of identity -> token, e.g. {"alice": "<token>"}',
}


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment (``MLPLATFORM_*``), with explicit overrides on top.
    Raises :class:`ConfigError` (one line, no value shown) when a setting is malformed."""
    settings: Settings | None = None
    problems: list[str] = []
    try:
        settings = Settings(**overrides)  # type: ignore[arg-type]
    except (ValidationError, SettingsError) as exc:
        problems = _problems(exc)
    if settings is None:  # raised here, outside the handler: no chained error carries the value
        hints = sorted({h for name, h in HINTS.items() if any(name in p for p in problems)})
        expected = f"; expected {' / '.join(hints)}" if hints else ""
        raise ConfigError(
            f"configuration error: {'; '.join(problems)}{expected} (values are not shown)"
        )
    return settings.model_copy(update={"home": settings.home.resolve()})
