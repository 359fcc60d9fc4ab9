"""Data commands: validate specs (and landing files), generate example data, show status."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from mlplatform.cli.context import HomeOption, ProjectsOption, fail, project_spec, settings_for
from mlplatform.landing import shown
from mlplatform.spec import ProjectSpec, SpecError, load_spec, spec_files


def validate(
    paths: Annotated[list[Path], typer.Argument(help="Spec files or folders of spec files.")],
    data: Annotated[
        bool,
        typer.Option("--data", help="Also check the first rows of each project's landing files."),
    ] = False,
    rows: Annotated[
        int, typer.Option("--rows", min=1, help="Rows read per landing file with --data.")
    ] = 1000,
    home: HomeOption = None,
) -> None:
    """Check project specs; print every problem with file, field path and reason."""
    from mlplatform.steps.train_sklearn import candidate_problems

    files: list[Path] = []
    for path in paths:
        files += spec_files(path) if path.is_dir() else [path]
    if not files:
        fail(f"no spec files (*.yaml) found in {', '.join(map(str, paths))}")
    bad = 0
    for file in files:
        try:
            spec = load_spec(file)
        except SpecError as exc:
            bad += 1
            problems = exc.problems + (candidate_problems(exc.partial) if exc.partial else [])
            typer.secho(str(SpecError(file, problems)), fg=typer.colors.RED, err=True)
            continue
        problems = candidate_problems(spec)
        if problems:
            bad += 1
            typer.secho(str(SpecError(file, problems)), fg=typer.colors.RED, err=True)
            continue
        typer.echo(f"{file}: ok ({spec.task}, {len(spec.candidates)} candidate(s))")
        if data and not _validate_data(spec, settings_for(home).home, rows):
            bad += 1
    if bad:
        raise typer.Exit(1)


def _validate_data(spec: ProjectSpec, home: Path, rows: int) -> bool:
    """Print what the first ``rows`` rows of each landing file show; False on problems."""
    from mlplatform.defs.partitions import data_partitions, landed_partitions
    from mlplatform.steps.preview import check_landing

    landing = spec.landing_dir(home)
    if not landing.is_dir():
        typer.secho(
            f"{shown(landing)}: landing folder does not exist (data.landing)", fg="red", err=True
        )
        return False
    found, stray = landed_partitions(spec, home)
    keys = data_partitions(spec).get_partition_keys()
    example = spec.data.filename.format(partition=keys[0] if keys else spec.partitions.start)
    preview = check_landing(spec, [spec.landing_file(home, k) for k in found], stray, example, rows)
    for note in preview.notes:
        typer.echo(f"note: {note}")
    for problem in preview.problems:
        typer.secho(problem, fg=typer.colors.RED, err=True)
    summary = f"{spec.name}: {preview.files} landing file(s), first {rows} rows each"
    if preview.problems:
        typer.secho(f"{summary}: {len(preview.problems)} problem(s)", fg="red", err=True)
        return False
    typer.echo(f"{summary}: ok")
    return True


def generate(
    project: Annotated[str, typer.Option(help="Example project to generate data for.")] = "churn",
    months: Annotated[int, typer.Option(min=1, help="Number of monthly partitions.")] = 36,
    rows: Annotated[
        int,
        typer.Option(
            min=10, max=50_000_000, help="Rows per month (millions are written in chunks)."
        ),
    ] = 2000,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 7,
    home: HomeOption = None,
    projects: ProjectsOption = None,
) -> None:
    """Write the example project's landing files (seeded, realistic, with dirt and drift)."""
    from mlplatform.examples.generate import generate_example

    settings = settings_for(home, projects)
    spec = project_spec(settings, project)
    landing = spec.landing_dir(settings.home)
    files = generate_example(
        landing, start=spec.partitions.start, months=months, rows_per_month=rows, seed=seed
    )
    typer.echo(f"wrote {len(files)} file(s) of {rows} rows to {landing}")


def status(
    project: Annotated[str, typer.Argument(help="Project name.")],
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
    show_all: Annotated[
        bool, typer.Option("--all", help="Also list partitions with no landing file.")
    ] = False,
    home: HomeOption = None,
    projects: ProjectsOption = None,
) -> None:
    """Assets x partitions: materialized, stale (and why), missing, failed_check (a blocking
    check failed: which and why), warning (a warn-only check failed); production last."""
    from mlplatform.defs.build import build_defs
    from mlplatform.defs.runs import instance_for, landed_partitions
    from mlplatform.defs.status import project_status

    settings = settings_for(home, projects)
    spec = project_spec(settings, project)
    landed, _ = landed_partitions(spec, settings.home)
    instance = instance_for(settings)
    rows = project_status(
        build_defs(settings, [spec]), instance, spec, None if show_all else landed, settings.home
    )
    if as_json:
        for row in rows:
            typer.echo(json.dumps(row.to_json()))
        return
    colors = {
        "materialized": "green",
        "stale": "yellow",
        "warning": "yellow",
        "missing": None,
        "failed_check": "red",
    }
    width = max((len(r.asset) for r in rows), default=10)
    typer.echo(f"{'asset':<{width}}  {'partition':<10}  {'state':<12}  reason")
    for row in rows:
        typer.echo(f"{row.asset:<{width}}  {row.partition or '-':<10}  ", nl=False)
        typer.secho(f"{row.state:<12}", fg=colors[row.state], nl=False)
        typer.echo(f"  {row.reason}")
    counts: dict[str, int] = {}
    for row in rows:
        counts[row.state] = counts.get(row.state, 0) + 1
    typer.echo(", ".join(f"{n} {state}" for state, n in sorted(counts.items())))
