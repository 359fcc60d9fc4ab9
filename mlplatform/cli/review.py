"""Review commands: list candidates, approve, reject, the promotion history, rollback, pull."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from mlplatform.cli.context import (
    AsOption,
    HomeOption,
    ProjectsOption,
    fail,
    project_spec,
    refuse_as,
    settings_for,
)
from mlplatform.identity import os_user
from mlplatform.settings import Settings
from mlplatform.spec import LOWER_IS_BETTER

if TYPE_CHECKING:  # httpx and the bundle loader: imported by the commands that use them
    from mlplatform.serving.client import Client


def _ledger(settings: Settings):
    from mlplatform.ledger import Ledger

    return Ledger(settings.ledger)


def _manifests(settings: Settings, project: str) -> dict[str, dict]:
    """Published bundles of a project, newest first: id -> manifest plus ``created_at``."""
    from mlplatform.bundles.catalog import BundleCatalog

    return {m["bundle_id"]: m for m in BundleCatalog(settings.bundles_dir).of_project(project)}


def candidates(
    project: Annotated[str, typer.Argument(help="Project name.")],
    home: HomeOption = None,
    projects: ProjectsOption = None,
) -> None:
    """Published bundles of a project grouped by cutoff (one holdout each, newest first): holdout
    metric, the best of each holdout, decisions, which is production."""
    settings = settings_for(home, projects)
    spec = project_spec(settings, project)
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
    finite = [float(v) for v in values if isinstance(v, int | float) and v == v]
    if not finite:
        return None
    return min(finite) if metric in LOWER_IS_BETTER else max(finite)


def _best_baseline(settings: Settings, project: str, cutoff: str, metric: str) -> str:
    """'best baseline: <name> <metric> <value>' from the cutoff's evaluation, or ''."""
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
        fail(f"{project}: {len(matches)} bundles match {prefix!r}; give more of the id")
    return matches[0]


def _api(settings: Settings) -> Client | None:
    """A client of the serving API when the caller acts through it (URL and token set), None
    for direct ledger access as the system account; one of the two alone is an error."""
    from mlplatform.serving.client import Client

    if settings.serve_url and settings.token:
        return Client(settings.serve_url, token=settings.token.get_secret_value())
    if settings.token:
        fail(
            "MLPLATFORM_TOKEN is set but MLPLATFORM_SERVE_URL is not: set it to act under the "
            f"token's identity, or unset MLPLATFORM_TOKEN to act as {os_user()} on the ledger"
        )
    if settings.serve_url:
        fail(
            "MLPLATFORM_SERVE_URL is set but MLPLATFORM_TOKEN is not: set your approver token, "
            f"or unset MLPLATFORM_SERVE_URL to act as {os_user()} on the ledger"
        )
    return None


def _remote_bundle(client: Client, project: str, prefix: str) -> str:
    matches = [b for b in client.bundle_ids(project) if b.startswith(prefix)]
    if len(matches) != 1:
        fail(f"{project}: {len(matches)} bundles match {prefix!r}; give more of the id")
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

    settings = settings_for(home, projects)
    client = _api(settings)
    if client is not None:
        try:
            bundle_id = _remote_bundle(client, project, bundle)
            row = client.decide(project, bundle_id, decision, comment)
        except ClientError as exc:
            raise fail(f"{project}: {decision} refused by {settings.serve_url}: {exc}") from None
        typer.echo(f"{row['actor']} {decision}d {project} bundle {bundle_id[:12]} (via API)")
        return
    from mlplatform.promotion import service as promotion

    project_spec(settings, project)
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
        raise fail(f"{project}: {decision} refused: {exc}") from None
    typer.echo(
        f"{record.actor} {decision}d {project} bundle {bundle_id[:12]} ({record.created_at:%c})"
    )


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
    refuse_as(actor)
    _decide("approve", project, bundle, comment, home, projects)


def reject(
    project: Annotated[str, typer.Argument(help="Project name.")],
    bundle: Annotated[str, typer.Argument(help="Bundle id (a unique prefix is enough).")],
    comment: Annotated[str, typer.Option("--comment", "-m", help="Why.")] = "",
    actor: AsOption = None,
    home: HomeOption = None,
    projects: ProjectsOption = None,
) -> None:
    """Reject a candidate bundle (recorded like approve)."""
    refuse_as(actor)
    _decide("reject", project, bundle, comment, home, projects)


def promotions(
    project: Annotated[str, typer.Argument(help="Project name.")],
    home: HomeOption = None,
    projects: ProjectsOption = None,
) -> None:
    """The promotion history of a project (append-only), oldest first."""
    settings = settings_for(home, projects)
    project_spec(settings, project)
    for row in _ledger(settings).history(project):
        before = (row.from_bundle or "-")[:12]
        typer.echo(
            f"{row.created_at:%Y-%m-%d %H:%M:%S} {row.kind:<8} {before:<12} -> "
            f"{row.to_bundle[:12]:<12} by {row.actor}: {row.reason}"
        )


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
    refuse_as(actor)
    settings = settings_for(home, projects)
    client = _api(settings)
    if client is not None:
        _rollback_via_api(client, settings, project, to, reason)
    else:
        _rollback_on_ledger(settings, project, to, reason)


def _rollback_via_api(
    client: Client, settings: Settings, project: str, to: str | None, reason: str
) -> None:
    from mlplatform.serving.client import ClientError

    try:
        target = _remote_bundle(client, project, to) if to else None
        moved = client.rollback(project, target, reason)
    except ClientError as exc:
        raise fail(f"{project}: rollback refused by {settings.serve_url}: {exc}") from None
    before = (moved["from_bundle"] or "-")[:12]
    typer.echo(
        f"{project} production: {before} -> {moved['to_bundle'][:12]} by {moved['actor']} (via API)"
    )


def _rollback_on_ledger(settings: Settings, project: str, to: str | None, reason: str) -> None:
    """The ledger's compare-and-swap as the system account, then the MLflow alias."""
    from mlplatform.ledger import LedgerError
    from mlplatform.promotion import service as promotion
    from mlplatform.resources.mlflow import MlflowTracking

    project_spec(settings, project)
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
        raise fail(f"{project}: rollback refused: {exc}") from None
    row = done.row
    if done.synced is None:
        raise fail(
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
        fail(f"{project}: pull failed: {exc}")
    typer.echo(f"{project}: production bundle {bundle.bundle_id} at {bundle.path}")
