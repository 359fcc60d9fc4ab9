"""``mlplatform predict``: score a file offline with a published bundle, streaming."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mlplatform.cli.context import HomeOption, ProjectsOption, fail, project_spec, settings_for
from mlplatform.free_memory import resume_collection
from mlplatform.landing import shown
from mlplatform.settings import Settings


def _bundle_id(settings: Settings, project: str, prefix: str | None) -> str:
    """The bundle given (a unique prefix of a published bundle of the project) or production."""
    if prefix is None:
        from mlplatform.ledger.pointer import production_bundle

        found = production_bundle(settings.ledger, project)
        if found is None:
            fail(f"{project}: no production bundle yet; promote one, or pass --bundle ID")
        return found
    from mlplatform.bundles.catalog import BundleCatalog

    ids = [m["bundle_id"] for m in BundleCatalog(settings.bundles_dir).of_project(project)]
    matches = [b for b in ids if b.startswith(prefix)]
    if len(matches) != 1:
        fail(
            f"{project}: {len(matches)} published bundles match --bundle {prefix!r}; "
            "give more of the id (mlplatform candidates lists them)"
        )
    return matches[0]


def predict(
    project: Annotated[str, typer.Argument(help="Project name.")],
    file: Annotated[Path, typer.Argument(help="CSV or Parquet file of raw rows.")],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Where to write: OUT.parquet or OUT.csv.")
    ],
    bundle: Annotated[
        str | None,
        typer.Option("--bundle", help="Bundle id (a unique prefix); default: production."),
    ] = None,
    chunk_rows: Annotated[int, typer.Option(min=1, help="Rows read and scored at once.")] = 65536,
    progress: Annotated[bool, typer.Option(help="Progress bar on stderr.")] = True,
    home: HomeOption = None,
    projects: ProjectsOption = None,
) -> None:
    """Score a file with the production bundle (or --bundle): one output row per input row
    with its row number, the bundle id and the prediction. Imports no dagster, sklearn,
    torch or mlflow."""
    from mlplatform.bundles.format import BundleError, load
    from mlplatform.scoring.batch import score_file
    from mlplatform.scoring.progress import Bar
    from mlplatform.scoring.reading import ScoringError, Source

    settings = settings_for(home, projects)
    spec = project_spec(settings, project)
    bundle_id = _bundle_id(settings, project, bundle)
    try:
        model = load(settings.bundles_dir / bundle_id)
    except BundleError as exc:
        fail(f"mlplatform: bundle {bundle_id[:12]} cannot be used: {exc}")
    resume_collection()  # start-up is over
    try:
        with Source(
            file,
            model.schema.feature_columns,
            delimiter=spec.data.delimiter,
            encoding=spec.data.encoding,
            chunk_rows=chunk_rows,
        ) as source:
            bar = Bar(shown(file.name)) if progress else None

            def advance(position: int, rows: int) -> None:
                if bar is not None:
                    bar.update(position, source.total, rows)

            summary = score_file(model, source, output, advance)
            if bar is not None:
                bar.update(source.total, source.total, summary.rows, final=True)
    except ScoringError as exc:
        fail(f"mlplatform: {exc}")
    for line in summary.warnings(file, source.format == "csv"):
        typer.secho(f"warning: {line}", fg=typer.colors.YELLOW, err=True)
    typer.echo(f"{summary.rows} row(s) scored by {bundle_id[:12]} -> {shown(output)}", err=True)
