"""The promotion policy as a pure function over a manifest and ledger decisions."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pytest

from mlplatform.promotion.policy import policy_problems
from mlplatform.spec import ProjectSpec, Promotion

MADE = dt.datetime(2026, 1, 10, 12, tzinfo=dt.UTC)
MANIFEST = {
    "project": "churn",
    "bundle_id": "b1",
    "training_manifest": {"triggered_by": "ann"},
}


@dataclass
class D:
    bundle_id: str
    decision: str
    actor: str
    created_at: dt.datetime


def later(minutes: int) -> dt.datetime:
    return MADE + dt.timedelta(minutes=minutes)


def with_policy(spec: ProjectSpec, **kw: object) -> ProjectSpec:
    return spec.model_copy(update={"promotion": Promotion(**kw)})  # type: ignore[arg-type]


def test_no_approval_is_refused(churn_spec: ProjectSpec) -> None:
    assert policy_problems(churn_spec, MANIFEST, []) == [
        "needs 1 approval(s) by someone other than the trainer, has 0"
    ]


def test_trainer_cannot_approve_own_model(churn_spec: ProjectSpec) -> None:
    problems = policy_problems(churn_spec, MANIFEST, [D("b1", "approve", "ann", later(1))])
    assert "ann triggered the training and cannot approve it" in problems


def test_a_decision_holds_for_the_same_content_published_again(churn_spec: ProjectSpec) -> None:
    """Bundle ids name content: an identical retrain republishes b1, and bob's earlier approval
    (or rejection) of exactly that content still counts."""
    assert policy_problems(churn_spec, MANIFEST, [D("b1", "approve", "bob", later(-5))]) == []
    rejected = [D("b1", "reject", "bob", later(-5))]
    assert "rejected by bob" in policy_problems(churn_spec, MANIFEST, rejected)


def test_valid_approval_and_later_rejection(churn_spec: ProjectSpec) -> None:
    ok = [D("b1", "approve", "bob", later(1)), D("b2", "approve", "eve", later(1))]
    assert policy_problems(churn_spec, MANIFEST, ok) == []
    rejected = [*ok, D("b1", "reject", "bob", later(2))]
    problems = policy_problems(churn_spec, MANIFEST, rejected)
    assert "rejected by bob" in problems


def test_two_approvers_needed(churn_spec: ProjectSpec) -> None:
    spec = with_policy(churn_spec, policy="approval", approvers=2)
    one = [D("b1", "approve", "bob", later(1)), D("b1", "approve", "bob", later(2))]
    assert "has 1 (bob)" in policy_problems(spec, MANIFEST, one)[0]
    two = [*one, D("b1", "approve", "eve", later(3))]
    assert policy_problems(spec, MANIFEST, two) == []


def test_auto_policy_and_wrong_project(churn_spec: ProjectSpec) -> None:
    assert policy_problems(with_policy(churn_spec, policy="auto"), MANIFEST, []) == []
    other = {**MANIFEST, "project": "sales"}
    assert "belongs to 'sales'" in policy_problems(churn_spec, other, [])[0]


@pytest.mark.parametrize("trainer", ["unknown", "web-ui", None])
def test_an_unknown_trainer_needs_one_more_distinct_approver(
    churn_spec: ProjectSpec, trainer: str | None
) -> None:
    """A run started from the web UI has no known trainer ("web-ui" before 0.13, "unknown" now,
    or nothing): any one approver may be the person who trained it, so the policy's count is
    met only with one more distinct approver, whoever the trainer was."""
    manifest = {**MANIFEST, "training_manifest": {"triggered_by": trainer}}
    alone = [D("b1", "approve", "bob", later(1)), D("b1", "approve", "bob", later(2))]
    (problem,) = policy_problems(churn_spec, manifest, alone)
    assert problem.startswith("the trainer is unknown")
    assert "needs 2 approvals by distinct identities, has 1 (bob)" in problem
    assert "ask another approver" in problem
    second = [*alone, D("b1", "approve", "eve", later(3))]
    assert policy_problems(churn_spec, manifest, second) == []
    spec = with_policy(churn_spec, policy="approval", approvers=2)
    assert "needs 3 approvals" in policy_problems(spec, manifest, second)[0]
    rejected = [*second, D("b1", "reject", "eve", later(4))]
    assert "rejected by eve" in policy_problems(churn_spec, manifest, rejected)


def test_a_known_automated_trainer_needs_the_policys_count(churn_spec: ProjectSpec) -> None:
    manifest = {**MANIFEST, "training_manifest": {"triggered_by": "sensor:churn__landing"}}
    assert policy_problems(churn_spec, manifest, [D("b1", "approve", "bob", later(1))]) == []
