"""Promotion policy: may this bundle become production? Pure logic over manifests and decisions."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from mlplatform.spec import ProjectSpec


class DecisionLike(Protocol):
    """What the policy reads of a decision (``ledger.Decision``, read-only)."""

    @property
    def bundle_id(self) -> str: ...
    @property
    def decision(self) -> str: ...
    @property
    def actor(self) -> str: ...
    @property
    def created_at(self) -> dt.datetime: ...


UNKNOWN = "unknown"
"""The trainer of a run started without a known user (e.g. from Dagster OSS's web UI)."""
UNKNOWN_TRAINERS = frozenset({UNKNOWN, "web-ui"})  # "web-ui": bundles trained before 0.13


def trainer_of(manifest: Mapping[str, Any]) -> str:
    """Who triggered the training of a bundle's model (from its training manifest)."""
    return str(manifest.get("training_manifest", {}).get("triggered_by") or UNKNOWN)


def current_approvers(
    manifest: Mapping[str, Any], decisions: Sequence[DecisionLike]
) -> tuple[list[str], list[str]]:
    """(approvers, rejecters) counting each actor's latest decision on this bundle. A bundle id
    names its content (model, code, inputs, metrics), so a decision on it holds for that content
    whenever the same training publishes it again."""
    latest: dict[str, DecisionLike] = {}
    for d in sorted(decisions, key=lambda d: d.created_at):
        if d.bundle_id == manifest["bundle_id"]:
            latest[d.actor] = d
    approvers = sorted(a for a, d in latest.items() if d.decision == "approve")
    rejecters = sorted(a for a, d in latest.items() if d.decision == "reject")
    return approvers, rejecters


def policy_problems(
    spec: ProjectSpec, manifest: Mapping[str, Any], decisions: Sequence[DecisionLike]
) -> list[str]:
    """Why the bundle may not be promoted under the spec's policy (empty: it may)."""
    if manifest.get("project") != spec.name:
        return [f"bundle {manifest.get('bundle_id')} belongs to {manifest.get('project')!r}"]
    if spec.promotion.policy == "auto":
        return []
    approvers, rejecters = current_approvers(manifest, decisions)
    problems = [f"rejected by {', '.join(rejecters)}"] if rejecters else []
    trainer = trainer_of(manifest)
    need = spec.promotion.approvers
    if trainer in UNKNOWN_TRAINERS:
        # Any approver may be the one who trained it; with one more distinct approver than the
        # policy asks for, ``need`` of them are someone else whoever the trainer was.
        if len(approvers) <= need:
            got = f" ({', '.join(approvers)})" if approvers else ""
            problems.append(
                f"the trainer is unknown (a run started without a user, e.g. from the web UI): "
                f"needs {need + 1} approvals by distinct identities, has {len(approvers)}{got}; "
                "ask another approver, or retrain with `mlplatform materialize` so that the "
                "trainer is known"
            )
        return problems
    if trainer in approvers:  # their approval does not count
        approvers = [a for a in approvers if a != trainer]
        if len(approvers) < need:
            problems.append(f"{trainer} triggered the training and cannot approve it")
    if len(approvers) < need:
        got = f" ({', '.join(approvers)})" if approvers else ""
        problems.append(
            f"needs {need} approval(s) by someone other than the trainer, has {len(approvers)}{got}"
        )
    return problems
