"""Approve, reject, promote and roll back: the one code path of the Dagster ``production``
asset, the serving API and the CLI.

Each checks, then writes the ledger (a compare-and-swap on the production pointer), then
points the MLflow alias at the ledger head (``promotion.alias``) through a ``Tracker``. A
refusal raises ``PromotionRefused`` (one line) and writes nothing; each face turns it into its
own error (``dg.Failure``, an HTTP status, a CLI exit).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from types import EllipsisType
from typing import TYPE_CHECKING, Any, ClassVar

from mlplatform.promotion.alias import (
    AliasSyncError,
    Synced,
    Tracker,
    ensure_registered,
    sync_production_alias,
)
from mlplatform.promotion.policy import policy_problems, trainer_of
from mlplatform.spec import ProjectSpec

if TYPE_CHECKING:  # SQLAlchemy and Alembic: imported when the ledger is first used
    from mlplatform.ledger import Decision, Ledger, Promotion


class PromotionRefused(Exception):  # noqa: N818 - public API name
    """Production did not move (or a decision was not recorded); the message says why."""

    retryable: ClassVar[bool] = False  # may the same call succeed later, unchanged?


class NotPublished(PromotionRefused):
    """The bundle is not a published bundle of the project."""


class Conflict(PromotionRefused):
    """Production is not what the caller saw: another promotion won, or it is that bundle."""


class TrackerFailed(PromotionRefused):
    """The model registry failed (unreachable server, a bundle it cannot register)."""

    retryable = True


@dataclass(frozen=True)
class RolledBack:
    """The rollback's ledger row and where the alias points (``alias_error``: why it did not
    move; the ledger moved anyway and the promotion sensor re-syncs the alias)."""

    row: Promotion
    synced: Synced | None
    alias_error: str | None


def _published(bundles_dir: Path, project: str, bundle_id: str) -> bool:
    """Is ``bundle_id`` a folder of ``bundles_dir`` whose manifest names it and ``project``?"""
    if not bundle_id or Path(bundle_id).name != bundle_id or bundle_id in {".", ".."}:
        return False
    try:
        manifest = json.loads((bundles_dir / bundle_id / "manifest.json").read_text("utf-8"))
    except (OSError, ValueError):
        return False
    return (
        isinstance(manifest, dict)
        and manifest.get("bundle_id") == bundle_id
        and manifest.get("project") == project
    )


def decide(
    ledger: Ledger,
    bundles_dir: Path,
    project: str,
    bundle_id: str,
    verdict: str,
    actor: str,
    comment: str = "",
) -> Decision:
    """Record ``actor``'s verdict (approve/reject) on a published bundle that is not
    production; the promotion sensor acts on approvals."""
    if not _published(bundles_dir, project, bundle_id):
        raise NotPublished(f"{bundle_id!r} is not a published bundle of {project!r}")
    pointer = ledger.production(project)
    if pointer is not None and pointer.to_bundle == bundle_id:
        raise Conflict(f"{bundle_id} is already production of {project!r}")
    return ledger.record_decision(project, bundle_id, verdict, actor, comment)


def approve(
    ledger: Ledger, bundles_dir: Path, project: str, bundle_id: str, actor: str, comment: str = ""
) -> Decision:
    """Record an approval (see ``decide``)."""
    return decide(ledger, bundles_dir, project, bundle_id, "approve", actor, comment)


def reject(
    ledger: Ledger, bundles_dir: Path, project: str, bundle_id: str, actor: str, comment: str = ""
) -> Decision:
    """Record a rejection (see ``decide``)."""
    return decide(ledger, bundles_dir, project, bundle_id, "reject", actor, comment)


def _sync_alias(ledger: Ledger, tracker: Tracker, project: str, bundles_dir: Path) -> Synced:
    """Point the alias at the ledger head; raises TrackerFailed."""
    try:
        return sync_production_alias(ledger, tracker, project, bundles_dir)
    except AliasSyncError as exc:
        raise TrackerFailed(str(exc)) from None


def _policy_actor(
    spec: ProjectSpec, manifest: dict[str, Any], decisions: list[Decision], bundle_id: str
) -> str:
    """Who promotes (the approvers, or ``auto``); PromotionRefused when the policy says no."""
    problems = policy_problems(spec, manifest, decisions)
    if problems:
        raise PromotionRefused(
            f"{spec.name}: bundle {bundle_id} is not promoted (policy "
            f"{spec.promotion.policy!r}): " + "; ".join(problems)
        )
    approvers = sorted({d.actor for d in decisions if d.decision == "approve"})
    return ",".join(approvers) if spec.promotion.policy == "approval" else "auto"


def promote(
    spec: ProjectSpec,
    ledger: Ledger,
    tracker: Tracker,
    bundles_dir: Path,
    bundle_id: str,
    expected_from: str | EllipsisType | None = ...,
) -> dict[str, object]:
    """Check the policy and promote: the bundle registered in MLflow (it is, unless its build
    was killed between publishing and registering), the ledger row (compare-and-swap), then the
    alias set from the ledger head.

    ``expected_from`` is the production the decision was based on (default: read it now).
    Raises PromotionRefused and changes nothing when the policy says no, the bundle cannot be
    registered, or another promotion got there first. Promoting the current production only
    re-syncs the alias.
    """
    from mlplatform.bundles.format import BundleError, verify
    from mlplatform.ledger import PromotionConflict

    try:
        manifest = verify(bundles_dir / bundle_id)
    except BundleError as exc:
        raise PromotionRefused(
            f"{spec.name}: bundle {bundle_id} cannot be promoted: {exc}"
        ) from None
    current = ledger.production(spec.name)
    current_id = current.to_bundle if current else None
    if expected_from is not ...:
        current_id = expected_from
    if current_id == bundle_id:
        synced = _sync_alias(ledger, tracker, spec.name, bundles_dir)
        return {"bundle_id": bundle_id, "changed": False, "mlflow_version": synced.version or ""}
    actor = _policy_actor(spec, manifest, ledger.decisions(spec.name, bundle_id), bundle_id)
    try:
        version = ensure_registered(tracker, spec.name, bundles_dir, bundle_id)
    except AliasSyncError as exc:
        raise TrackerFailed(f"{spec.name}: bundle {bundle_id} is not promoted: {exc}") from None
    try:
        row = ledger.promote(
            spec.name,
            bundle_id,
            actor=actor,
            reason=f"{spec.promotion.policy}: {manifest['candidate']} cutoff {manifest['cutoff']}",
            expected_from=current_id,
        )
    except PromotionConflict as exc:
        raise Conflict(f"{spec.name}: another promotion won: {exc}") from None
    _sync_alias(ledger, tracker, spec.name, bundles_dir)
    return {
        "bundle_id": bundle_id,
        "changed": True,
        "from_bundle": row.from_bundle or "",
        "actor": actor,
        "trainer": trainer_of(manifest),
        "mlflow_version": version,
    }


def rollback(
    ledger: Ledger,
    tracker: Tracker | None,
    project: str,
    bundles_dir: Path,
    actor: str,
    reason: str,
    to: str | None = None,
) -> RolledBack:
    """Point production back at ``to`` (default: the previous production), a bundle that was
    production before and still verifies; then the alias follows the ledger head (``tracker``
    None: the promotion sensor moves it). A failing registry does not stop a rollback: the
    ledger moves and ``alias_error`` says why the alias did not."""
    from mlplatform.bundles.format import BundleError, verify
    from mlplatform.ledger import PromotionConflict

    pointer = ledger.production(project)
    if pointer is None:
        raise PromotionRefused(f"{project!r} has no production bundle to roll back from")
    target = to or pointer.from_bundle
    if target is None:
        raise PromotionRefused(
            f"production {pointer.to_bundle} of {project!r} has no previous bundle"
        )
    if target == pointer.to_bundle:
        raise PromotionRefused(f"{target} is already production of {project!r}")
    if not _published(bundles_dir, project, target):
        if to is not None:
            raise NotPublished(f"{target!r} is not a published bundle of {project!r}")
        raise PromotionRefused(f"previous bundle {target} is no longer published")
    if target not in {p.to_bundle for p in ledger.history(project)}:
        raise PromotionRefused(
            f"{target} was never production of {project!r}; a new bundle becomes "
            "production through review and promotion, not rollback"
        )
    try:
        verify(bundles_dir / target)
    except BundleError as exc:
        raise PromotionRefused(f"bundle {target} fails verification: {exc}") from None
    try:
        row = ledger.promote(
            project, target, actor, reason, kind="rollback", expected_from=pointer.to_bundle
        )
    except PromotionConflict as exc:
        raise Conflict(str(exc)) from None
    if tracker is None:
        return RolledBack(row, None, None)
    try:  # the alias follows the ledger head, which a concurrent rollback may have moved on
        return RolledBack(row, sync_production_alias(ledger, tracker, project, bundles_dir), None)
    except AliasSyncError as exc:
        return RolledBack(row, None, str(exc))
