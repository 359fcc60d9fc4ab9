"""The ``mlplatform`` command line: a thin layer over specs, steps and Dagster runs.

One module per user task: ``data`` (validate, generate, status), ``runs`` (materialize, demo),
``review`` (candidates, approve, reject, promotions, rollback, pull), ``serve`` (serve, ui) and
``stack``; ``context`` holds what they share. Heavy libraries are imported by the commands that
use them, so ``mlplatform --help`` stays light.
"""

from __future__ import annotations

import sys
import traceback
from typing import Annotated

import typer

from mlplatform.cli import data, predict, review, runs, serve, shadow, stack
from mlplatform.cli.context import FLAGS, quiet_libraries
from mlplatform.free_memory import pause_collection
from mlplatform.redaction import redact


class _App(typer.Typer):
    """Without -v, an unexpected error ends the command with one line, not a stack trace."""

    def __call__(self, *args: object, **kwargs: object) -> object:
        pause_collection()  # commands that run long resume it when their work begins
        try:
            return super().__call__(*args, **kwargs)
        except Exception as exc:
            # whatever a library put in its message, secrets of the environment are blanked
            if FLAGS.verbose:
                typer.echo(redact("".join(traceback.format_exception(exc))), err=True)
                sys.exit(1)
            message = f"mlplatform: {type(exc).__name__}: {exc} (run with -v for the stack trace)"
            typer.secho(
                redact(message),
                fg=typer.colors.RED,
                err=True,
            )
            sys.exit(1)


app = _App(
    help="mlplatform: tabular ML from landing files to a verified, pickle-free bundle.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

# in the order `mlplatform --help` lists them
for _command in (
    data.validate,
    data.generate,
    runs.materialize,
    runs.demo,
    data.status,
    review.candidates,
    review.approve,
    review.reject,
    review.promotions,
    review.rollback,
    shadow.shadow,
    serve.serve,
    predict.predict,
    review.pull,
    serve.ui,
):
    app.command()(_command)
app.add_typer(stack.stack_app, name="stack")


@app.callback()
def main(
    verbose: Annotated[
        bool,
        typer.Option("--verbose", "-v", help="Show library logs, warnings and stack traces."),
    ] = False,
) -> None:
    """mlplatform command line."""
    FLAGS.verbose = verbose
    if not verbose:
        quiet_libraries()


__all__ = ["app", "main", "quiet_libraries"]
