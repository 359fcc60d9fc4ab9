"""Serving commands: the HTTP API and the Dagster web UI."""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from mlplatform.cli.context import HomeOption, ProjectsOption, fail, settings_for
from mlplatform.free_memory import resume_collection
from mlplatform.spec import SpecError, load_specs


def serve(
    host: Annotated[str, typer.Option(help="Bind address.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8000,
    workers: Annotated[int, typer.Option(help="Worker processes.")] = 1,
    home: HomeOption = None,
    projects: ProjectsOption = None,
) -> None:
    """Serve production bundles over HTTP (predict, manifests, downloads, review, approvals)."""
    import uvicorn

    from mlplatform.ledger import LedgerError
    from mlplatform.prediction_log import LogLocationError
    from mlplatform.serving.app import create_app

    settings = settings_for(home, projects)
    os.environ["MLPLATFORM_HOME"] = str(settings.home)
    os.environ["MLPLATFORM_PROJECTS_DIR"] = str(settings.projects_dir.resolve())
    try:  # the app is built here once, so a bad spec or ledger fails in one line
        served = create_app(settings)
    except SpecError as exc:
        problems = "; ".join(f"{loc or '<file>'}: {msg}" for loc, msg in exc.problems)
        fail(f"cannot serve: {exc.path}: {problems} (see `mlplatform validate`)")
    except (LedgerError, LogLocationError, OSError) as exc:
        fail(f"cannot serve: {str(exc).splitlines()[0]}")
    if workers != 1:  # each worker builds its own app
        served.state.ledger.dispose()
    typer.echo(f"serving on http://{host}:{port} (home {settings.home})")
    resume_collection()
    uvicorn.run(
        served if workers == 1 else "mlplatform.serving.app:app_from_env",
        factory=workers != 1,
        host=host,
        port=port,
        workers=workers,
        log_level="warning",
    )


def ui(
    port: Annotated[int, typer.Option(help="Web UI port.")] = 3000,
    host: Annotated[str, typer.Option(help="Bind address.")] = "127.0.0.1",
    home: HomeOption = None,
    projects: ProjectsOption = None,
) -> None:
    """Start the Dagster web UI (and daemon) on this platform's instance; Ctrl-C stops it all."""
    from mlplatform.local_ui import serve

    settings = settings_for(home, projects)
    load_specs(settings.projects_dir)
    resume_collection()
    code = serve(settings, host, port, notify=typer.echo)
    sys.stdout.flush()
    sys.stderr.flush()
    # Everything is stopped and recorded; skip the interpreter's teardown of Dagster, pandas &
    # co. (1-2 s), so that a stop stays well within the 10 s a service manager allows.
    os._exit(code)
