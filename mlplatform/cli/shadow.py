"""``mlplatform shadow``: run a candidate bundle in shadow beside production, or stop it."""

from __future__ import annotations

from typing import Annotated

import typer

from mlplatform.cli.context import HomeOption, ProjectsOption, fail, project_spec, settings_for
from mlplatform.cli.review import _api, _ledger, _remote_bundle, _resolve_bundle
from mlplatform.identity import os_user
from mlplatform.settings import Settings


def shadow(
    project: Annotated[str, typer.Argument(help="Project name.")],
    bundle: Annotated[
        str | None, typer.Argument(help="Bundle id (a unique prefix is enough).")
    ] = None,
    off: Annotated[bool, typer.Option("--off", help="Stop the project's shadow.")] = False,
    home: HomeOption = None,
    projects: ProjectsOption = None,
) -> None:
    """Attach a published candidate in shadow: serving predicts logged requests with it too
    (never returned) and the review page shows its agreement with production. Recorded as
    the owner of MLPLATFORM_TOKEN (through MLPLATFORM_SERVE_URL), or else as your system
    account."""
    if off == (bundle is not None):
        fail("give a BUNDLE to attach in shadow, or --off to stop the shadow (not both)")
    settings = settings_for(home, projects)
    client = _api(settings)
    if client is not None:
        from mlplatform.serving.client import ClientError

        try:
            target = _remote_bundle(client, project, bundle) if bundle else None
            found = client.shadow(project, target)
        except ClientError as exc:
            raise fail(f"{project}: shadow refused by {settings.serve_url}: {exc}") from None
    else:
        found = _on_home(settings, project, bundle)
    if found.get("bundle_id"):
        typer.echo(
            f"{project}: bundle {found['bundle_id'][:12]} in shadow (attached by {found['actor']})"
        )
    else:
        typer.echo(f"{project}: no shadow bundle")


def _on_home(settings: Settings, project: str, bundle: str | None) -> dict[str, str | None]:
    """Attach (verified first) or detach directly under the home, as the system account."""
    from mlplatform.bundles.format import load
    from mlplatform.shadow import attach_shadow, detach_shadow

    project_spec(settings, project)
    if bundle is None:
        detach_shadow(settings.home, project)
        return {"bundle_id": None}
    bundle_id = _resolve_bundle(settings, project, bundle)
    head = _ledger(settings).production(project)
    if head is not None and head.to_bundle == bundle_id:
        fail(f"{project}: bundle {bundle_id[:12]} is production already; attach a candidate")
    try:
        load(settings.bundles_dir / bundle_id)
    except Exception as exc:
        raise fail(f"{project}: bundle {bundle_id[:12]} refused: {exc}") from None
    found = attach_shadow(settings.home, project, bundle_id, os_user())
    return {"bundle_id": found.bundle_id, "actor": found.actor}
