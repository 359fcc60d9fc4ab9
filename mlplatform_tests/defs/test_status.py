"""``status`` tells the truth: the latest *completed* check decides, warn-only checks are
warnings, and the production pointer shows what it points at."""

from __future__ import annotations

import dagster as dg
import pytest

from mlplatform.defs.build import build_defs, data_job_name, train_job_name
from mlplatform.defs.status import PartitionStatus, project_status
from mlplatform.ledger import Ledger
from mlplatform.steps import candidates
from mlplatform_tests.projects import ProjectFactory, Trained, production_job


def rows(
    defs: dg.Definitions, instance: dg.DagsterInstance, project: object
) -> dict[tuple[str, str], PartitionStatus]:
    spec = project.spec  # type: ignore[attr-defined]
    return {(r.asset, r.partition): r for r in project_status(defs, instance, spec)}


def test_production_shows_the_promoted_bundle(two_bundles: Trained) -> None:
    t = two_bundles
    p = t.project.spec.name
    assert rows(t.defs, t.instance, t.project)[(f"{p}/production", "")].state == "missing"
    Ledger(t.project.settings.ledger).record_decision(p, t.bundles[1], "approve", "bob", "ok")
    result = production_job(t.defs, p).execute_in_process(
        instance=t.instance,
        run_config={"ops": {f"{p}__production": {"config": {"bundle_id": t.bundles[1]}}}},
    )
    assert result.success
    got = rows(t.defs, t.instance, t.project)
    production = got[(f"{p}/production", "")]
    assert production.state == "materialized" and t.bundles[1][:12] in production.reason
    assert not [k for k in got if k[0] == f"{p}/production" and k[1]]  # one row, no partitions


def test_failed_gates_survive_failed_and_canceled_runs(
    make_project: ProjectFactory, instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = make_project(
        "binary",
        months=4,
        rows=250,
        evaluation={"primary_metric": "roc_auc", "gates": [{"metric": "roc_auc", "min": 0.999}]},
    )
    p, cutoff = project.spec.name, project.files[-1].stem
    defs = build_defs(project.settings, [project.spec])
    for f in project.files:
        job = defs.resolve_job_def(data_job_name(p))
        assert job.execute_in_process(partition_key=f.stem, instance=instance).success
    train = defs.resolve_job_def(train_job_name(p))
    assert not train.execute_in_process(
        partition_key=cutoff, instance=instance, raise_on_error=False
    ).success
    evaluation = rows(defs, instance, project)[(f"{p}/evaluation", cutoff)]
    assert evaluation.state == "failed_check"
    assert evaluation.reason.startswith("gates: ") and "roc_auc" in evaluation.reason

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("out of memory")

    monkeypatch.setattr(candidates, "fit", broken)
    result = train.execute_in_process(partition_key=cutoff, instance=instance, raise_on_error=False)
    assert not result.success  # the evaluation never ran: its planned check says nothing
    assert rows(defs, instance, project)[(f"{p}/evaluation", cutoff)] == evaluation
    run = instance.get_run_by_id(result.run_id)
    assert run is not None
    instance.report_run_canceled(run)
    assert instance.get_run_by_id(result.run_id).status == dg.DagsterRunStatus.CANCELED  # type: ignore[union-attr]
    assert rows(defs, instance, project)[(f"{p}/evaluation", cutoff)] == evaluation


def test_warn_only_drift_is_a_warning_and_a_parse_error_a_failed_check(
    make_project: ProjectFactory, instance: dg.DagsterInstance
) -> None:
    project = make_project(
        "binary",
        months=2,
        rows=200,
        drift={"psi_threshold": 1e-6, "share_threshold": 1e-6, "severity": "warn"},
    )
    p = project.spec.name
    defs = build_defs(project.settings, [project.spec])
    job = defs.resolve_job_def(data_job_name(p))
    for f in project.files:
        assert job.execute_in_process(partition_key=f.stem, instance=instance).success
    second = project.files[1].stem
    got = rows(defs, instance, project)
    assert got[(f"{p}/features", second)].state == "warning"
    assert got[(f"{p}/features", second)].reason.startswith("drift: ")

    project.files[1].write_text("customer_id\nC1\n")
    assert not job.execute_in_process(
        partition_key=second, instance=instance, raise_on_error=False
    ).success
    raw = rows(defs, instance, project)[(f"{p}/raw", second)]
    assert raw.state == "failed_check" and "missing column(s)" in raw.reason
    assert raw.reason.startswith("step: ")
