"""`mlplatform stack`: the team deployment's processes on this machine."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Annotated

import typer

from mlplatform.cli.context import HomeOption, ProjectsOption, fail, settings_for
from mlplatform.redaction import redact, secret_values
from mlplatform.spec import load_specs

stack_app = typer.Typer(
    help="The team deployment on this machine: PostgreSQL, MLflow server, Dagster code server, "
    "webserver and daemon, and the serving app, as separate processes.",
    no_args_is_help=True,
)


def _port(service: str, default: str) -> object:
    return typer.Option(
        f"--{service}-port",
        envvar=f"MLPLATFORM_STACK_{service.upper().replace('-', '_')}_PORT",
        help=f"Port of {service.replace('-', ' ')} (default {default}, or the last `up`'s).",
    )


def _stack_config(home: Path | None, projects: Path | None):
    from mlplatform.stack.config import load_config

    settings = settings_for(home, projects)
    return load_config(settings.home, settings.projects_dir)


def _print_stack(rows: list) -> None:
    colors = {"running": "green", "unhealthy": "yellow", "stopped": "red"}
    typer.echo(f"{'service':<12} {'state':<10} {'pid':>7} {'port':>6}  {'url':<32} log")
    for row in rows:
        typer.echo(f"{row.service:<12} ", nl=False)
        typer.secho(f"{row.state:<10}", fg=colors[row.state], nl=False)
        typer.echo(f" {row.pid or '-':>7} {row.port or '-':>6}  {row.url or '-':<32} {row.log}")


@stack_app.command("up")
def stack_up(
    home: HomeOption = None,
    projects: ProjectsOption = None,
    host: Annotated[
        str | None, typer.Option(help="Bind address of every service (default 127.0.0.1).")
    ] = None,
    postgres_port: Annotated[int | None, _port("postgres", "5433")] = None,
    mlflow_port: Annotated[int | None, _port("mlflow", "5000")] = None,
    code_server_port: Annotated[int | None, _port("code-server", "4000")] = None,
    webserver_port: Annotated[int | None, _port("webserver", "3000")] = None,
    serving_port: Annotated[int | None, _port("serving", "8000")] = None,
    max_concurrent_runs: Annotated[
        int | None,
        typer.Option(
            envvar="DAGSTER_MAX_CONCURRENT_RUNS", min=1, help="Runs in progress at once (4)."
        ),
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for everything.")] = 300,
) -> None:
    """Start every service that is not running yet and wait until all are healthy."""
    from mlplatform.stack.control import cluster, up
    from mlplatform.stack.processes import StackError

    settings = settings_for(home, projects)
    config = _stack_config(home, projects).with_overrides(
        host=host,
        ports={
            "postgres": postgres_port,
            "mlflow": mlflow_port,
            "code_server": code_server_port,
            "webserver": webserver_port,
            "serving": serving_port,
        },
        max_concurrent_runs=max_concurrent_runs,
        projects_dir=settings.projects_dir.resolve(),
    )
    load_specs(config.projects_dir)  # a broken spec fails here, not in the code server's log
    try:
        rows = up(config, timeout=timeout, notify=typer.echo)
    except StackError as exc:
        # the tail of a service's log may quote the database URL: no password in it
        pg = cluster(config)
        generated = [pg.password.get_secret_value()] if pg.initialized else []
        raise fail(redact(f"stack up failed: {exc}", [*generated, *secret_values()])) from None
    _print_stack(rows)
    typer.echo(
        f"Dagster UI {config.url('webserver')}   MLflow {config.url('mlflow')}   "
        f"serving {config.url('serving')}"
    )


@stack_app.command("down")
def stack_down(home: HomeOption = None) -> None:
    """Stop exactly the processes `stack up` started (and its PostgreSQL)."""
    from mlplatform.stack.control import down

    down(_stack_config(home, None), notify=typer.echo)


@stack_app.command("status")
def stack_status(
    home: HomeOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """Each service: running / unhealthy / stopped, pid, port, URL and log file."""
    from mlplatform.stack.control import status

    rows = status(_stack_config(home, None))
    if as_json:
        for row in rows:
            typer.echo(json.dumps(row.to_json()))
    else:
        _print_stack(rows)
    if any(row.state != "running" for row in rows):
        raise typer.Exit(1)


@stack_app.command("env")
def stack_env(home: HomeOption = None) -> None:
    """Print `export` lines that point a shell (CLI, notebooks) at the running stack."""
    from mlplatform.stack.config import platform_env
    from mlplatform.stack.control import cluster

    config = _stack_config(home, None)
    pg = cluster(config)
    if not pg.initialized:
        fail(f"no stack under {config.home}; run `mlplatform stack up` first")
    for key, value in platform_env(config, pg.password).items():
        typer.echo(f"export {key}={shlex.quote(value)}")
