"""Platform settings: one pydantic-settings object, read only when asked for."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

EXAMPLES_DIR = Path(__file__).parent / "examples"


class Settings(BaseSettings):
    """Where the platform keeps its state. Every field can be set as ``MLPLATFORM_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="MLPLATFORM_", frozen=True)

    home: Path = Field(default=Path(".mlplatform"), description="Root folder of all local state.")
    projects_dir: Path = Field(
        default=EXAMPLES_DIR, description="Folder of project spec YAML files (*.yaml)."
    )
    mlflow_tracking_uri: str | None = Field(
        default=None, description="MLflow tracking URI; default: SQLite file under home."
    )
    ledger_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the promotion ledger; default: SQLite file under home.",
    )
    search_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the hyperparameter-search (Optuna) database; "
        "default: SQLite file under home.",
    )
    dagster_home_dir: Path | None = Field(
        default=None,
        description="DAGSTER_HOME the CLI uses (e.g. a team stack's PostgreSQL instance); "
        "default: $MLPLATFORM_HOME/dagster with the embedded SQLite instance.",
    )
    reader_tokens: dict[str, str] = Field(
        default_factory=dict,
        description="identity -> token of API readers (JSON in MLPLATFORM_READER_TOKENS).",
    )
    approver_tokens: dict[str, str] = Field(
        default_factory=dict,
        description="identity -> token of approvers (JSON in MLPLATFORM_APPROVER_TOKENS).",
    )
    serving_docs: bool = Field(
        default=False,
        description="Serve /docs and /redoc; they load Swagger UI/ReDoc from the jsDelivr CDN.",
    )

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


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment (``MLPLATFORM_*``), with explicit overrides on top."""
    settings = Settings(**overrides)  # type: ignore[arg-type]
    return settings.model_copy(update={"home": settings.home.resolve()})
