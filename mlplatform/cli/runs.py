"""Materialize through Dagster (one run per partition, only what is stale) and the demo."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from mlplatform.cli.context import (
    FLAGS,
    HomeOption,
    ProjectsOption,
    fail,
    project_spec,
    quiet_optuna,
    settings_for,
)
from mlplatform.cli.data import generate
from mlplatform.cli.summary import summary_lines
from mlplatform.landing import shown
from mlplatform.redaction import redact
from mlplatform.settings import Settings
from mlplatform.spec import ProjectSpec

if TYPE_CHECKING:  # Dagster is imported by the commands that run it
    from mlplatform.defs.interrupts import Stop, StopRequestedError
    from mlplatform.defs.runs import RunOutcome


def _print_outcome(i: int, n: int, outcome: RunOutcome) -> None:
    status = "ok" if outcome.success else "FAILED"
    color = typer.colors.GREEN if outcome.success else typer.colors.RED
    typer.echo(f"  [{i}/{n}] {outcome.job} {outcome.partition} ", nl=False)
    typer.secho(f"{status} ({outcome.seconds:.1f}s)", fg=color)
    if outcome.error:  # a library's error may quote a URL or token of the settings
        error = redact(outcome.error)
        typer.secho("      " + error.replace("\n", "\n      "), fg=color, err=True)


def _shown(keys: list[str]) -> str:
    return ", ".join(keys) if len(keys) < 4 else f"{keys[0]} .. {keys[-1]}"


def _run(
    settings: Settings,
    spec: ProjectSpec,
    assets: str,
    start: str | None,
    end: str | None,
    latest: bool,
    force: bool = False,
) -> tuple[list, list]:
    """Materialize through Dagster, one run per partition, only what is missing or stale
    (everything in range with ``force``); returns the run outcomes and the cutoff plans.
    The first SIGINT or SIGTERM stops it all: the run in progress ends FAILURE, no further
    run starts, and the command exits with 128 + the signal's number after saying what
    finished and what did not run."""
    from mlplatform.defs.build import train_job_name
    from mlplatform.defs.interrupts import StopRequestedError, stop_on_signal

    if assets != "data":  # data runs search nothing: optuna stays unimported
        quiet_optuna(spec)
    with stop_on_signal() as stop:
        landed = _landed(settings, spec)
        data_keys, cutoffs = _selection(spec, landed, assets, start, end, latest)
        progress = _Progress(stop, [(train_job_name(spec.name), c) for c in cutoffs])
        try:
            stop.check()
            return _run_stale(settings, spec, landed, data_keys, cutoffs, force, progress)
        except StopRequestedError as exc:
            _print_stopped(exc, progress.done, progress.not_run)
            raise typer.Exit(exc.exit_code) from None


def _landed(settings: Settings, spec: ProjectSpec) -> list[str]:
    """The landed partition keys, after a warning per stray file; none ends the command."""
    from mlplatform.defs.runs import landed_partitions

    landed, stray = landed_partitions(spec, settings.home)
    for path in stray:
        typer.secho(
            f"warning: {shown(path)} matches no partition key; ignored", fg="yellow", err=True
        )
    if not landed:
        fail(f"no landing files for {spec.name} in {shown(spec.landing_dir(settings.home))}")
    return landed


def _selection(
    spec: ProjectSpec,
    landed: list[str],
    assets: str,
    start: str | None,
    end: str | None,
    latest: bool,
) -> tuple[list[str], list[str]]:
    """The data partition keys and the cutoffs asked for, within --from/--to."""
    from mlplatform.defs.runs import reads_of, trainable_cutoffs

    def in_range(key: str) -> bool:
        return (start is None or key >= start) and (end is None or key <= end)

    cutoffs = [k for k in trainable_cutoffs(spec, landed) if in_range(k)]
    if assets == "data":
        cutoffs = []
    elif latest:
        cutoffs = cutoffs[-1:]
    wanted: set[str] = set()
    if assets in ("data", "all"):
        wanted = {k for k in landed if in_range(k)}
        wanted |= {k for c in cutoffs for k in reads_of(spec, c) if k in landed}
    return sorted(wanted), cutoffs


class _Progress:
    """Prints each finished run and keeps what is done and what has not run, for a stop."""

    def __init__(self, stop: Stop, not_run: list[tuple[str, str]]) -> None:
        self.stop = stop
        self.done: list[RunOutcome] = []
        self.not_run = not_run

    def __call__(self, i: int, n: int, outcome: RunOutcome) -> None:
        self.done.append(outcome)
        self.not_run.remove((outcome.job, outcome.partition))
        _print_outcome(i, n, outcome)
        self.stop.check()


def _run_stale(
    settings: Settings,
    spec: ProjectSpec,
    landed: list[str],
    data_keys: list[str],
    cutoffs: list[str],
    force: bool,
    progress: _Progress,
) -> tuple[list, list]:
    """The data runs of the stale partitions, then the training runs the cutoffs' plans ask."""
    from mlplatform.defs.build import build_defs, data_job_name, train_job_name
    from mlplatform.defs.runs import (
        QUIET,
        SILENT,
        instance_for,
        plan_cutoff,
        run_partitions,
        stale_data_keys,
    )

    config = QUIET if FLAGS.verbose else SILENT
    defs = build_defs(settings, [spec])
    instance = instance_for(settings)
    todo = data_keys if force else stale_data_keys(defs, instance, spec, data_keys, settings.home)
    typer.echo(
        f"{spec.name}: {len(todo)} of {len(data_keys)} data partition(s) to build"
        + (f" [{_shown(todo)}]" if todo else "")
        + f", {len(cutoffs)} cutoff(s)"
        + (f" [{_shown(cutoffs)}]" if cutoffs else "")
    )
    progress.not_run[:0] = [(data_job_name(spec.name), k) for k in todo]
    progress.stop.check()
    outcomes = run_partitions(
        defs, instance, data_job_name(spec.name), todo, progress, run_config=config
    )
    plans = [plan_cutoff(defs, instance, spec, c, settings.home, force, landed) for c in cutoffs]
    for plan in plans:
        if plan.refused:
            typer.secho(plan.refused, fg=typer.colors.RED, err=True)
        if not plan.assets:
            progress.not_run.remove((train_job_name(spec.name), plan.cutoff))
        if plan.note:
            typer.echo(f"  cutoff {plan.cutoff}: {plan.note}")
    train = [plan for plan in plans if plan.assets]
    outcomes += run_partitions(
        defs,
        instance,
        train_job_name(spec.name),
        [plan.cutoff for plan in train],
        progress,
        selections={plan.cutoff: plan.assets for plan in train},
        run_config=config,
    )
    if not todo and not train and not any(plan.refused for plan in plans):
        typer.echo(
            f"nothing is stale: {len(data_keys)} data partition(s) and {len(cutoffs)} "
            "cutoff(s) up to date (--force recomputes them)"
        )
    return outcomes, plans


def _summary(settings: Settings, spec: ProjectSpec, plans: list) -> None:
    """Per cutoff: winner, primary metric vs production and baselines, gates, report, bundle."""
    from mlplatform.defs.runs import instance_for, latest_bundle

    instance = instance_for(settings)
    reports = settings.home / "reports" / spec.name
    evaluations = settings.home / "evaluations" / spec.name
    typer.secho("summary", bold=True)
    for plan in plans:
        if plan.refused:
            typer.echo(f"  cutoff {plan.cutoff}: not trained (see above)")
            continue
        path = evaluations / f"{plan.cutoff}.json"
        if not path.is_file():
            typer.echo(f"  cutoff {plan.cutoff}: no evaluation")
            continue
        evaluation = json.loads(path.read_text(encoding="utf-8"))
        bundle = latest_bundle(instance, spec, plan.cutoff)
        for line in summary_lines(spec, plan.cutoff, evaluation, bundle):
            typer.echo(line)
        report = reports / f"{plan.cutoff}.html"
        typer.echo(f"    report: {report if report.is_file() else '-'}")


def _print_stopped(
    exc: StopRequestedError, done: list[RunOutcome], not_run: list[tuple[str, str]]
) -> None:
    ok = sum(o.success for o in done)
    typer.secho(
        f"stopped by {exc.signal_name}: {ok} run(s) succeeded, {len(done) - ok} failed "
        f"(a run in progress when the signal came ends FAILURE), {len(not_run)} not run",
        fg=typer.colors.YELLOW,
        err=True,
    )
    jobs: dict[str, list[str]] = {}
    for job, key in not_run:
        jobs.setdefault(job, []).append(key)
    for job, keys in jobs.items():
        typer.secho(f"  not run: {job} {', '.join(keys)}", fg=typer.colors.YELLOW, err=True)


def materialize(
    project: Annotated[str, typer.Argument(help="Project name (its spec file's stem).")],
    assets: Annotated[
        str, typer.Option(help="data (raw, features), train (models, evaluation, bundle) or all.")
    ] = "all",
    start: Annotated[
        str | None,
        typer.Option(
            "--from",
            help="First partition key: data partitions and cutoffs (a cutoff's key is its "
            "holdout partition) before it are left alone.",
        ),
    ] = None,
    end: Annotated[
        str | None,
        typer.Option("--to", help="Last partition key, for data partitions and cutoffs alike."),
    ] = None,
    all_cutoffs: Annotated[
        bool,
        typer.Option(
            "--all-cutoffs",
            help="Train every cutoff in --from/--to, not only the newest one (a backtest).",
        ),
    ] = False,
    force: Annotated[
        bool,
        typer.Option("--force", help="Recompute everything in range, stale or not."),
    ] = False,
    home: HomeOption = None,
    projects: ProjectsOption = None,
) -> None:
    """Materialize what is missing or stale through Dagster, one run per partition: landed
    data partitions in --from/--to (and those the chosen cutoffs read), then the newest
    cutoff in range (--all-cutoffs: every one). A cutoff that reads a partition with a failed
    blocking check, or whose window is not materialized, is refused (exit 1)."""
    if assets not in ("data", "train", "all"):
        raise typer.BadParameter("--assets must be data, train or all")
    settings = settings_for(home, projects)
    spec = project_spec(settings, project)
    outcomes, plans = _run(settings, spec, assets, start, end, not all_cutoffs, force)
    failed = [o for o in outcomes if not o.success]
    refused = [p for p in plans if p.refused]
    if plans:
        _summary(settings, spec, plans)
    typer.echo(
        f"{len(outcomes) - len(failed)} run(s) succeeded, {len(failed)} failed"
        + (f", {len(refused)} cutoff(s) refused" if refused else "")
    )
    if failed or refused:
        raise typer.Exit(1)


def _latest_bundle(settings: Settings, spec: ProjectSpec) -> tuple[str | None, str | None]:
    import dagster as dg

    from mlplatform.defs.runs import instance_for

    instance = instance_for(settings)
    bundle = instance.get_latest_materialization_event(dg.AssetKey([spec.name, "bundle"]))
    evaluation = instance.get_latest_materialization_event(dg.AssetKey([spec.name, "evaluation"]))

    def meta(event: object, key: str) -> str | None:
        if event is None or event.asset_materialization is None:  # type: ignore[attr-defined]
            return None
        value = event.asset_materialization.metadata.get(key)  # type: ignore[attr-defined]
        return None if value is None else str(value.value)

    return meta(bundle, "path"), meta(evaluation, "report")


def demo(
    months: Annotated[int, typer.Option(min=13, help="Months of example data.")] = 36,
    rows: Annotated[int, typer.Option(min=100, help="Rows per month.")] = 2000,
    home: HomeOption = None,
) -> None:
    """Generate the example data and materialize the whole example graph end to end."""
    settings = settings_for(home)
    spec = project_spec(settings, "churn")
    typer.secho(f"1/3 generating example data under {settings.home}", bold=True)
    generate(project="churn", months=months, rows=rows, seed=7, home=settings.home, projects=None)
    typer.secho(
        "2/3 materializing churn: raw -> features -> models -> evaluation -> bundle", bold=True
    )
    outcomes, plans = _run(settings, spec, "all", None, None, latest=True)
    failed = [o for o in outcomes if not o.success]
    refused = [p for p in plans if p.refused]
    if failed or refused:
        fail(f"{len(failed)} run(s) failed, {len(refused)} cutoff(s) refused; see above")
    bundle, report = _latest_bundle(settings, spec)
    typer.secho("3/3 done", bold=True)
    typer.echo(f"  bundle:  {bundle}")
    typer.echo(f"  report:  {report}")
    typer.echo(
        f'  load it: {Path(sys.executable).parent / "python"} -c "import mlflow.pyfunc as p; '
        f"print(p.load_model('{bundle}/model'))\""
    )
    cli_path = Path(sys.executable).parent / "mlplatform"
    typer.echo(
        f"  web UI:  MLPLATFORM_HOME={settings.home} {cli_path} ui  "
        "(then open http://127.0.0.1:3000)"
    )
