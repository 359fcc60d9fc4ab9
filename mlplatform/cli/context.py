"""What every command shares: the --home/--projects/--as options, settings and project
resolution, the one-line failure, and the -v flag with the quieting of libraries."""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from mlplatform.identity import os_user
from mlplatform.settings import ConfigError, Settings, load_settings
from mlplatform.spec import ProjectSpec, SpecError, load_spec, spec_files


class Flags:
    """Options of the command group, read by the commands: ``verbose`` is set by -v."""

    verbose: bool = False


FLAGS = Flags()

HomeOption = Annotated[
    Path | None,
    typer.Option("--home", help="Platform home (default: $MLPLATFORM_HOME or ./.mlplatform)."),
]
ProjectsOption = Annotated[
    Path | None, typer.Option("--projects", help="Folder of project specs (default: the examples).")
]


def settings_for(home: Path | None, projects: Path | None = None) -> Settings:
    """The settings; a malformed one ends the command with one line naming it (no value)."""
    overrides: dict[str, object] = {}
    if home is not None:
        overrides["home"] = home
    if projects is not None:
        overrides["projects_dir"] = projects
    try:
        return load_settings(**overrides)
    except ConfigError as exc:
        raise fail(f"mlplatform: {exc}") from None


def project_spec(settings: Settings, name: str) -> ProjectSpec:
    path = settings.projects_dir / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(p.stem for p in spec_files(settings.projects_dir)) or "none"
        raise typer.BadParameter(
            f"no project {name!r} in {settings.projects_dir} (projects: {known})"
        )
    try:
        return load_spec(path)
    except SpecError as exc:
        fail(str(exc))
        raise


def fail(message: str) -> NoReturn:
    typer.secho(message, fg=typer.colors.RED, err=True)
    raise typer.Exit(1)


AsOption = Annotated[
    str | None,
    typer.Option("--as", hidden=True, help="No longer accepted: identities come from credentials."),
]


def refuse_as(actor: str | None) -> None:
    if actor is not None:
        fail(
            "--as is no longer accepted: decisions are recorded under your credentials, the "
            "owner of MLPLATFORM_TOKEN (with MLPLATFORM_SERVE_URL) or else your system account "
            f"({os_user()}); drop --as"
        )


def quiet_libraries() -> None:
    """Keep the terminal to our own progress and errors: no library warnings (sklearn's,
    Dagster's beta notes), MLflow chatter or bars; optuna is quieted where it is used."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "ERROR")
    warnings.simplefilter("ignore")
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.ERROR)


def quiet_optuna(spec: ProjectSpec) -> None:
    """Optuna's own handler logs every trial at INFO; the asset logs them already. Imported
    only for a project that searches, so other commands do not pay for optuna."""
    if FLAGS.verbose or not any(c.search for c in spec.candidates):
        return
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
