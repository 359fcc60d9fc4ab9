"""The ``mlplatform`` command line: a thin layer over specs, steps and Dagster runs."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from mlplatform.identity import os_user
from mlplatform.landing import shown
from mlplatform.settings import ConfigError, Settings, load_settings
from mlplatform.spec import ProjectSpec, SpecError, load_spec, load_specs, spec_files

if TYPE_CHECKING:  # httpx and the bundle loader: imported by the commands that use them
    from mlplatform.serving.client import Client

_VERBOSE = False  # set by the -v option of the command group


class _App(typer.Typer):
    """Without -v, an unexpected error ends the command with one line, not a stack trace."""

    def __call__(self, *args: object, **kwargs: object) -> object:
        try:
            return super().__call__(*args, **kwargs)
        except Exception as exc:
            # whatever a library put in its message, secrets of the environment are blanked
            from mlplatform.redaction import redact

            if _VERBOSE:
                import traceback

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

HomeOption = Annotated[
    Path | None,
    typer.Option("--home", help="Platform home (default: $MLPLATFORM_HOME or ./.mlplatform)."),
]
ProjectsOption = Annotated[
    Path | None, typer.Option("--projects", help="Folder of project specs (default: the examples).")
]


def _settings(home: Path | None, projects: Path | None = None) -> Settings:
    """The settings; a malformed one ends the command with one line naming it (no value)."""
    overrides: dict[str, object] = {}
    if home is not None:
        overrides["home"] = home
    if projects is not None:
        overrides["projects_dir"] = projects
    try:
        return load_settings(**overrides)
    except ConfigError as exc:
        raise _fail(f"mlplatform: {exc}") from None


def _project(settings: Settings, name: str) -> ProjectSpec:
    path = settings.projects_dir / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(p.stem for p in spec_files(settings.projects_dir)) or "none"
        raise typer.BadParameter(
            f"no project {name!r} in {settings.projects_dir} (projects: {known})"
        )
    try:
        return load_spec(path)
    except SpecError as exc:
        _fail(str(exc))
        raise


def _fail(message: str) -> typer.Exit:
    typer.secho(message, fg=typer.colors.RED, err=True)
    raise typer.Exit(1)


@app.command()
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
        _fail(f"no spec files (*.yaml) found in {', '.join(map(str, paths))}")
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
        if data and not _validate_data(spec, _settings(home).home, rows):
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


@app.command()
def generate(
    project: Annotated[str, typer.Option(help="Example project to generate data for.")] = "churn",
    months: Annotated[int, typer.Option(min=1, help="Number of monthly partitions.")] = 36,
    rows: Annotated[int, typer.Option(min=10, help="Rows per month.")] = 2000,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 7,
    home: HomeOption = None,
    projects: ProjectsOption = None,
) -> None:
    """Write the example project's landing files (seeded, realistic, with dirt and drift)."""
    from mlplatform.examples.generate import generate_example

    settings = _settings(home, projects)
    spec = _project(settings, project)
    landing = spec.landing_dir(settings.home)
    files = generate_example(
        landing, start=spec.partitions.start, months=months, rows_per_month=rows, seed=seed
    )
    typer.echo(f"wrote {len(files)} file(s) of {rows} rows to {landing}")


def _print_outcome(i: int, n: int, outcome: object) -> None:
    from mlplatform.defs.runs import RunOutcome
    from mlplatform.redaction import redact

    assert isinstance(outcome, RunOutcome)
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
    from mlplatform.defs.build import build_defs, data_job_name, train_job_name
    from mlplatform.defs.interrupts import StopRequestedError, stop_on_signal
    from mlplatform.defs.runs import (
        QUIET,
        SILENT,
        RunOutcome,
        instance_for,
        landed_partitions,
        plan_cutoff,
        reads_of,
        run_partitions,
        stale_data_keys,
        trainable_cutoffs,
    )

    _quiet_optuna(spec)
    with stop_on_signal() as stop:
        landed, stray = landed_partitions(spec, settings.home)
        for path in stray:
            typer.secho(
                f"warning: {shown(path)} matches no partition key; ignored", fg="yellow", err=True
            )
        if not landed:
            _fail(f"no landing files for {spec.name} in {shown(spec.landing_dir(settings.home))}")

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
        data_keys = sorted(wanted)
        done: list[RunOutcome] = []
        not_run: list[tuple[str, str]] = [(train_job_name(spec.name), c) for c in cutoffs]
        config = QUIET if _VERBOSE else SILENT

        def progress(i: int, n: int, outcome: RunOutcome) -> None:
            done.append(outcome)
            not_run.remove((outcome.job, outcome.partition))
            _print_outcome(i, n, outcome)
            stop.check()

        try:
            stop.check()
            defs = build_defs(settings, [spec])
            instance = instance_for(settings)
            todo = (
                data_keys
                if force
                else stale_data_keys(defs, instance, spec, data_keys, settings.home)
            )
            typer.echo(
                f"{spec.name}: {len(todo)} of {len(data_keys)} data partition(s) to build"
                + (f" [{_shown(todo)}]" if todo else "")
                + f", {len(cutoffs)} cutoff(s)"
                + (f" [{_shown(cutoffs)}]" if cutoffs else "")
            )
            not_run[:0] = [(data_job_name(spec.name), k) for k in todo]
            stop.check()
            outcomes = run_partitions(
                defs, instance, data_job_name(spec.name), todo, progress, run_config=config
            )
            plans = [
                plan_cutoff(defs, instance, spec, c, settings.home, force, landed) for c in cutoffs
            ]
            for plan in plans:
                if plan.refused:
                    typer.secho(plan.refused, fg=typer.colors.RED, err=True)
                if not plan.assets:
                    not_run.remove((train_job_name(spec.name), plan.cutoff))
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
        except StopRequestedError as exc:
            _print_stopped(exc, done, not_run)
            raise typer.Exit(exc.exit_code) from None


def _summary(settings: Settings, spec: ProjectSpec, plans: list) -> None:
    """Per cutoff: winner, primary metric vs production and baselines, gates, report, bundle."""
    import json

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


def _fmt(value: object) -> str:
    return f"{value:.4f}" if isinstance(value, int | float) else "-"


def summary_lines(
    spec: ProjectSpec, cutoff: str, evaluation: dict, bundle: str | None
) -> list[str]:
    """The summary of one cutoff's evaluation JSON, read defensively (fields may be absent):
    models named ``baseline...`` are reference predictors, ``production`` the current one."""
    result = evaluation.get("result", evaluation)
    metric = result.get("primary_metric") or spec.evaluation.primary_metric
    models = result.get("models") or {}
    winner = result.get("winner")

    def value(name: str) -> object:
        return ((models.get(name) or {}).get("metrics") or {}).get(metric)

    compare = []
    production = result.get("production")
    if "production" in models:
        compare.append(f"production {_fmt(value('production'))}")
    elif isinstance(production, dict) and production.get("note"):
        compare.append(f"production: {production['note']}")
    elif isinstance(production, str) and production:
        compare.append(f"production: {production}")
    baselines = [n for n in models if n.startswith("baseline")]
    compare += [f"{name} {_fmt(value(name))}" for name in baselines]
    versus = f" (vs {', '.join(compare)})" if compare else ""
    if winner:
        lines = [f"  cutoff {cutoff}: winner {winner}, {metric} {_fmt(value(winner))}{versus}"]
        gated = [winner]
    else:
        lines = [f"  cutoff {cutoff}: no winner{versus}"]
        gated = [n for n in models if n != "production" and n not in baselines]
    for name in gated:
        for gate in (models.get(name) or {}).get("gates") or []:
            lines.append(f"    gate {name}: {_gate(gate)}")
    for reason in result.get("reasons") or []:
        lines.append(f"    reason: {reason}")
    lines.append(f"    bundle: {bundle or '-'}")
    return lines


def _gate(gate: dict) -> str:
    """'roc_auc 0.8123 (min 0.55) passed'; a relative gate with its baseline and lift."""
    rule = [f"{k} {gate[k]}" for k in ("min", "max", "min_lift") if gate.get(k) is not None]
    rule += ["beat_baseline"] * bool(gate.get("beat_baseline"))
    text = f"{gate.get('metric')} {_fmt(gate.get('value'))} ({', '.join(rule) or 'no bound'})"
    if gate.get("baseline"):
        text += f" vs {gate['baseline']} {_fmt(gate.get('baseline_value'))}"
        if gate.get("lift") is not None:
            text += f", lift {gate['lift']:+.4f}"
    return f"{text} {'passed' if gate.get('passed') else 'FAILED'}"


def _print_stopped(exc: object, done: list, not_run: list[tuple[str, str]]) -> None:
    from mlplatform.defs.interrupts import StopRequestedError

    assert isinstance(exc, StopRequestedError)
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


@app.command()
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
    settings = _settings(home, projects)
    spec = _project(settings, project)
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


@app.command()
def demo(
    months: Annotated[int, typer.Option(min=13, help="Months of example data.")] = 36,
    rows: Annotated[int, typer.Option(min=100, help="Rows per month.")] = 2000,
    home: HomeOption = None,
) -> None:
    """Generate the example data and materialize the whole example graph end to end."""
    settings = _settings(home)
    spec = _project(settings, "churn")
    typer.secho(f"1/3 generating example data under {settings.home}", bold=True)
    generate(project="churn", months=months, rows=rows, seed=7, home=settings.home, projects=None)
    typer.secho(
        "2/3 materializing churn: raw -> features -> models -> evaluation -> bundle", bold=True
    )
    outcomes, plans = _run(settings, spec, "all", None, None, latest=True)
    failed = [o for o in outcomes if not o.success]
    refused = [p for p in plans if p.refused]
    if failed or refused:
        _fail(f"{len(failed)} run(s) failed, {len(refused)} cutoff(s) refused; see above")
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


@app.command()
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
    import json

    from mlplatform.defs.build import build_defs
    from mlplatform.defs.runs import instance_for, landed_partitions
    from mlplatform.defs.status import project_status

    settings = _settings(home, projects)
    spec = _project(settings, project)
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


def _ledger(settings: Settings):
    from mlplatform.ledger import Ledger

    return Ledger(settings.ledger)


def _manifests(settings: Settings, project: str) -> dict[str, dict]:
    """Published bundles of a project, newest first: id -> manifest plus ``created_at``."""
    from mlplatform.bundles.catalog import BundleCatalog

    return {m["bundle_id"]: m for m in BundleCatalog(settings.bundles_dir).of_project(project)}


@app.command()
def candidates(
    project: Annotated[str, typer.Argument(help="Project name.")],
    home: HomeOption = None,
    projects: ProjectsOption = None,
) -> None:
    """Published bundles of a project grouped by cutoff (one holdout each, newest first): holdout
    metric, the best of each holdout, decisions, which is production."""
    settings = _settings(home, projects)
    spec = _project(settings, project)
    ledger = _ledger(settings)
    current = ledger.production(project)
    production = current.to_bundle if current else None
    metric = spec.evaluation.primary_metric
    groups = _holdout_groups(list(_manifests(settings, project).values()), metric)
    if not groups:
        typer.echo(f"{project}: no published bundles yet")
    for cutoff, rows in groups:
        typer.echo(f"cutoff {cutoff} (holdout {cutoff}; compare only within it)")
        baseline = _best_baseline(settings, project, cutoff, metric)
        if baseline:
            typer.echo(f"  {baseline}")
        typer.echo(f"  {'bundle':<14} {'candidate':<12} {metric:>10}  status")
        best = (
            _best_value([m["metrics"].get(metric) for m in rows], metric) if len(rows) > 1 else None
        )
        for m in rows:
            value = m["metrics"].get(metric)
            shown = f"{value:.4f}" if isinstance(value, float) else "-"
            marks = ["best of this holdout"] * (best is not None and value == best)
            marks += ["production"] * (m["bundle_id"] == production)
            marks += [
                f"{d.decision}d by {d.actor}" for d in ledger.decisions(project, m["bundle_id"])
            ]
            line = (
                f"  {m['bundle_id'][:12]:<14} {m['candidate']:<12} {shown:>10}  {', '.join(marks)}"
            )
            typer.echo(line.rstrip())
    if production and not any(m["bundle_id"] == production for _, rows in groups for m in rows):
        typer.echo(f"production: {production[:12]} (its bundle folder is not here)")


def _holdout_groups(manifests: list[dict], metric: str) -> list[tuple[str, list[dict]]]:
    """Bundles by cutoff, newest cutoff first; within a cutoff best ``metric`` first."""
    from mlplatform.spec import LOWER_IS_BETTER

    by_cutoff: dict[str, list[dict]] = {}
    for m in manifests:
        by_cutoff.setdefault(str(m.get("cutoff") or "-"), []).append(m)

    def rank(m: dict) -> tuple[bool, float, str]:
        value = m.get("metrics", {}).get(metric)
        if not isinstance(value, int | float) or value != value:
            return (True, 0.0, m["bundle_id"])
        return (False, value if metric in LOWER_IS_BETTER else -value, m["bundle_id"])

    return [(c, sorted(by_cutoff[c], key=rank)) for c in sorted(by_cutoff, reverse=True)]


def _best_value(values: list[object], metric: str) -> float | None:
    """The best finite value of ``metric`` among ``values``, or None."""
    from mlplatform.spec import LOWER_IS_BETTER

    finite = [float(v) for v in values if isinstance(v, int | float) and v == v]
    if not finite:
        return None
    return min(finite) if metric in LOWER_IS_BETTER else max(finite)


def _best_baseline(settings: Settings, project: str, cutoff: str, metric: str) -> str:
    """'best baseline: <name> <metric> <value>' from the cutoff's evaluation, or ''."""
    import json

    path = settings.home / "evaluations" / project / f"{cutoff}.json"
    try:
        models = json.loads(path.read_text(encoding="utf-8"))["result"]["models"]
    except (OSError, ValueError, KeyError, TypeError):
        return ""
    scores = {
        name: m["metrics"].get(metric)
        for name, m in models.items()
        if isinstance(m, dict) and m.get("kind") == "baseline"
    }
    best = _best_value(list(scores.values()), metric)
    if best is None:
        return ""
    name = next(n for n, v in scores.items() if v == best)
    return f"best baseline: {name} {metric} {best:.4f}"


def _resolve_bundle(settings: Settings, project: str, prefix: str) -> str:
    matches = [b for b in _manifests(settings, project) if b.startswith(prefix)]
    if len(matches) != 1:
        _fail(f"{project}: {len(matches)} bundles match {prefix!r}; give more of the id")
    return matches[0]


AsOption = Annotated[
    str | None,
    typer.Option("--as", hidden=True, help="No longer accepted: identities come from credentials."),
]


def _refuse_as(actor: str | None) -> None:
    if actor is not None:
        _fail(
            "--as is no longer accepted: decisions are recorded under your credentials, the "
            "owner of MLPLATFORM_TOKEN (with MLPLATFORM_SERVE_URL) or else your system account "
            f"({os_user()}); drop --as"
        )


def _api(settings: Settings) -> Client | None:
    """A client of the serving API when the caller acts through it (URL and token set), None
    for direct ledger access as the system account; one of the two alone is an error."""
    from mlplatform.serving.client import Client

    if settings.serve_url and settings.token:
        return Client(settings.serve_url, token=settings.token.get_secret_value())
    if settings.token:
        _fail(
            "MLPLATFORM_TOKEN is set but MLPLATFORM_SERVE_URL is not: set it to act under the "
            f"token's identity, or unset MLPLATFORM_TOKEN to act as {os_user()} on the ledger"
        )
    if settings.serve_url:
        _fail(
            "MLPLATFORM_SERVE_URL is set but MLPLATFORM_TOKEN is not: set your approver token, "
            f"or unset MLPLATFORM_SERVE_URL to act as {os_user()} on the ledger"
        )
    return None


def _remote_bundle(client: Client, project: str, prefix: str) -> str:
    matches = [b for b in client.bundle_ids(project) if b.startswith(prefix)]
    if len(matches) != 1:
        _fail(f"{project}: {len(matches)} bundles match {prefix!r}; give more of the id")
    return matches[0]


def _decide(
    decision: str,
    project: str,
    bundle: str,
    comment: str,
    home: Path | None,
    projects: Path | None,
) -> None:
    from mlplatform.serving.client import ClientError

    settings = _settings(home, projects)
    client = _api(settings)
    if client is not None:
        try:
            bundle_id = _remote_bundle(client, project, bundle)
            row = client.decide(project, bundle_id, decision, comment)
        except ClientError as exc:
            raise _fail(f"{project}: {decision} refused by {settings.serve_url}: {exc}") from None
        typer.echo(f"{row['actor']} {decision}d {project} bundle {bundle_id[:12]} (via API)")
        return
    from mlplatform.promotion import service as promotion

    _project(settings, project)
    bundle_id = _resolve_bundle(settings, project, bundle)
    try:
        record = promotion.decide(
            _ledger(settings),
            settings.bundles_dir,
            project,
            bundle_id,
            decision,
            os_user(),
            comment,
        )
    except promotion.PromotionRefused as exc:
        raise _fail(f"{project}: {decision} refused: {exc}") from None
    typer.echo(
        f"{record.actor} {decision}d {project} bundle {bundle_id[:12]} ({record.created_at:%c})"
    )


@app.command()
def approve(
    project: Annotated[str, typer.Argument(help="Project name.")],
    bundle: Annotated[str, typer.Argument(help="Bundle id (a unique prefix is enough).")],
    comment: Annotated[str, typer.Option("--comment", "-m", help="Why.")] = "",
    actor: AsOption = None,
    home: HomeOption = None,
    projects: ProjectsOption = None,
) -> None:
    """Approve a candidate bundle; the promotion sensor then promotes it if the policy allows.
    Recorded as the owner of MLPLATFORM_TOKEN (through MLPLATFORM_SERVE_URL), or else as
    your system account."""
    _refuse_as(actor)
    _decide("approve", project, bundle, comment, home, projects)


@app.command()
def reject(
    project: Annotated[str, typer.Argument(help="Project name.")],
    bundle: Annotated[str, typer.Argument(help="Bundle id (a unique prefix is enough).")],
    comment: Annotated[str, typer.Option("--comment", "-m", help="Why.")] = "",
    actor: AsOption = None,
    home: HomeOption = None,
    projects: ProjectsOption = None,
) -> None:
    """Reject a candidate bundle (recorded like approve)."""
    _refuse_as(actor)
    _decide("reject", project, bundle, comment, home, projects)


@app.command()
def promotions(
    project: Annotated[str, typer.Argument(help="Project name.")],
    home: HomeOption = None,
    projects: ProjectsOption = None,
) -> None:
    """The promotion history of a project (append-only), oldest first."""
    settings = _settings(home, projects)
    _project(settings, project)
    for row in _ledger(settings).history(project):
        before = (row.from_bundle or "-")[:12]
        typer.echo(
            f"{row.created_at:%Y-%m-%d %H:%M:%S} {row.kind:<8} {before:<12} -> "
            f"{row.to_bundle[:12]:<12} by {row.actor}: {row.reason}"
        )


@app.command()
def rollback(
    project: Annotated[str, typer.Argument(help="Project name.")],
    to: Annotated[
        str | None, typer.Option("--to", help="Bundle id (prefix); default: the previous one.")
    ] = None,
    reason: Annotated[str, typer.Option("--reason", "-m", help="Why.")] = "rollback",
    actor: AsOption = None,
    home: HomeOption = None,
    projects: ProjectsOption = None,
) -> None:
    """Point production back at a bundle that was production before, instantly and audited
    (recorded like approve)."""
    from mlplatform.ledger import LedgerError
    from mlplatform.promotion import service as promotion
    from mlplatform.resources.mlflow import MlflowTracking
    from mlplatform.serving.client import ClientError

    _refuse_as(actor)
    settings = _settings(home, projects)
    client = _api(settings)
    if client is not None:
        try:
            target = _remote_bundle(client, project, to) if to else None
            moved = client.rollback(project, target, reason)
        except ClientError as exc:
            raise _fail(f"{project}: rollback refused by {settings.serve_url}: {exc}") from None
        before = (moved["from_bundle"] or "-")[:12]
        typer.echo(
            f"{project} production: {before} -> {moved['to_bundle'][:12]} "
            f"by {moved['actor']} (via API)"
        )
        return
    _project(settings, project)
    mlflow = MlflowTracking(
        tracking_uri=settings.tracking_uri, artifact_root=str(settings.mlflow_artifacts_dir)
    )
    try:
        done = promotion.rollback(
            _ledger(settings),
            mlflow,
            project,
            settings.bundles_dir,
            os_user(),
            reason,
            to=_resolve_bundle(settings, project, to) if to else None,
        )
    except (promotion.PromotionRefused, LedgerError) as exc:
        raise _fail(f"{project}: rollback refused: {exc}") from None
    row = done.row
    if done.synced is None:
        raise _fail(
            f"{project}: rolled back to {row.to_bundle[:12]} in the ledger, but {done.alias_error}"
        )
    moved = (
        ""
        if done.synced.bundle_id == row.to_bundle
        else f"; since moved to {str(done.synced.bundle_id)[:12]}"
    )
    typer.echo(
        f"{project} production: {(row.from_bundle or '-')[:12]} -> {row.to_bundle[:12]} "
        f"(MLflow version {done.synced.version or '-'}{moved})"
    )


@app.command()
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
    from mlplatform.serving.app import create_app

    settings = _settings(home, projects)
    os.environ["MLPLATFORM_HOME"] = str(settings.home)
    os.environ["MLPLATFORM_PROJECTS_DIR"] = str(settings.projects_dir.resolve())
    try:  # the app is built here once, so a bad spec or ledger fails in one line
        served = create_app(settings)
    except SpecError as exc:
        problems = "; ".join(f"{loc or '<file>'}: {msg}" for loc, msg in exc.problems)
        _fail(f"cannot serve: {exc.path}: {problems} (see `mlplatform validate`)")
    except (LedgerError, OSError) as exc:
        _fail(f"cannot serve: {str(exc).splitlines()[0]}")
    if workers != 1:  # each worker builds its own app
        served.state.ledger.dispose()
    typer.echo(f"serving on http://{host}:{port} (home {settings.home})")
    uvicorn.run(
        served if workers == 1 else "mlplatform.serving.app:app_from_env",
        factory=workers != 1,
        host=host,
        port=port,
        workers=workers,
        log_level="warning",
    )


@app.command()
def pull(
    project: Annotated[str, typer.Argument(help="Project name.")],
    url: Annotated[
        str, typer.Option(envvar="MLPLATFORM_SERVE_URL", help="Serving URL.")
    ] = "http://127.0.0.1:8000",
    token: Annotated[
        str | None, typer.Option(envvar="MLPLATFORM_TOKEN", help="Reader token.")
    ] = None,
    cache: Annotated[Path, typer.Option(help="Local bundle cache.")] = Path(".mlplatform-cache"),
) -> None:
    """Download and verify the current production bundle of a project into a local cache."""
    from mlplatform.bundles.format import BundleError
    from mlplatform.serving.client import Client

    try:
        bundle = Client(url, token=token, cache_dir=cache).pull(project)
    except (BundleError, OSError) as exc:
        _fail(f"{project}: pull failed: {exc}")
    typer.echo(f"{project}: production bundle {bundle.bundle_id} at {bundle.path}")


@app.command()
def ui(
    port: Annotated[int, typer.Option(help="Web UI port.")] = 3000,
    host: Annotated[str, typer.Option(help="Bind address.")] = "127.0.0.1",
    home: HomeOption = None,
    projects: ProjectsOption = None,
) -> None:
    """Start the Dagster web UI (and daemon) on this platform's instance; Ctrl-C stops it all."""
    from mlplatform.local_ui import serve

    settings = _settings(home, projects)
    load_specs(settings.projects_dir)
    code = serve(settings, host, port, notify=typer.echo)
    sys.stdout.flush()
    sys.stderr.flush()
    # Everything is stopped and recorded; skip the interpreter's teardown of Dagster, pandas &
    # co. (1-2 s), so that a stop stays well within the 10 s a service manager allows.
    os._exit(code)


stack_app = typer.Typer(
    help="The team deployment on this machine: PostgreSQL, MLflow server, Dagster code server, "
    "webserver and daemon, and the serving app, as separate processes.",
    no_args_is_help=True,
)
app.add_typer(stack_app, name="stack")


def _port(service: str, default: str) -> object:
    return typer.Option(
        f"--{service}-port",
        envvar=f"MLPLATFORM_STACK_{service.upper().replace('-', '_')}_PORT",
        help=f"Port of {service.replace('-', ' ')} (default {default}, or the last `up`'s).",
    )


def _stack_config(home: Path | None, projects: Path | None):
    from mlplatform.stack.config import load_config

    settings = _settings(home, projects)
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
    from mlplatform.redaction import redact, secret_values
    from mlplatform.stack.control import cluster, up
    from mlplatform.stack.processes import StackError

    settings = _settings(home, projects)
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
        raise _fail(redact(f"stack up failed: {exc}", [*generated, *secret_values()])) from None
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
    import json

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
    import shlex

    from mlplatform.stack.config import platform_env
    from mlplatform.stack.control import cluster

    config = _stack_config(home, None)
    pg = cluster(config)
    if not pg.initialized:
        _fail(f"no stack under {config.home}; run `mlplatform stack up` first")
    for key, value in platform_env(config, pg.password).items():
        typer.echo(f"export {key}={shlex.quote(value)}")


@app.callback()
def main(
    verbose: Annotated[
        bool,
        typer.Option("--verbose", "-v", help="Show library logs, warnings and stack traces."),
    ] = False,
) -> None:
    """mlplatform command line."""
    global _VERBOSE
    _VERBOSE = verbose
    if not verbose:
        quiet_libraries()


def quiet_libraries() -> None:
    """Keep the terminal to our own progress and errors: no library warnings (sklearn's,
    Dagster's beta notes), MLflow chatter or bars; optuna is quieted where it is used."""
    import logging
    import warnings

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "ERROR")
    warnings.simplefilter("ignore")
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.ERROR)


def _quiet_optuna(spec: ProjectSpec) -> None:
    """Optuna's own handler logs every trial at INFO; the asset logs them already. Imported
    only for a project that searches, so other commands do not pay for optuna."""
    if _VERBOSE or not any(c.search for c in spec.candidates):
        return
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)


if __name__ == "__main__":
    app()
