"""Incremental recompute: the landing sensor and declarative automation rebuild exactly what is
stale, read back from the instance's event log; code changes mark exactly the right assets."""

from __future__ import annotations

import hashlib

import dagster as dg
import pytest

from mlplatform.defs import features as features_defs
from mlplatform.defs.build import build_defs, train_job_name
from mlplatform.defs.status import project_status
from mlplatform.defs.ticks import (
    latest_storage_id,
    materialized_since,
    run_automation,
    tick_landing_sensor,
)
from mlplatform.spec import Candidate
from mlplatform_tests.projects import Project, ProjectFactory

Pairs = set[tuple[str, str]]


def downstream_of_cutoff(p: str, cutoff: str) -> Pairs:
    return {(f"{p}/{a}", cutoff) for a in ("model/logreg", "model/forest", "evaluation", "bundle")}


def full_history(project: Project, instance: dg.DagsterInstance, landed: int) -> tuple:
    """Land the first ``landed`` files through the sensor and train every cutoff."""
    defs = build_defs(project.settings, [project.spec])
    later = project.files[landed:]
    parked = {f: f.read_bytes() for f in later}
    for f in later:
        f.unlink()
    _, ok, cursor = tick_landing_sensor(defs, instance, project.spec)
    assert ok and all(ok)
    _, auto_cursor = run_automation(defs, instance)  # first tick: baseline, requests nothing
    job = defs.resolve_job_def(train_job_name(project.spec.name))
    for f in project.files[project.spec.training.window : landed]:
        assert job.execute_in_process(partition_key=f.stem, instance=instance).success
    for f, data in parked.items():
        f.write_bytes(data)
    return defs, cursor, auto_cursor


def test_new_month_recomputes_exactly_its_downstream(
    make_project: ProjectFactory, instance: dg.DagsterInstance
) -> None:
    project = make_project("binary", months=6, rows=250)
    p = project.spec.name
    defs, cursor, auto = full_history(project, instance, landed=5)
    bundles_before = set((project.home / "bundles").iterdir())

    mark = latest_storage_id(instance)
    new = project.files[5].stem
    requests, ok, cursor = tick_landing_sensor(defs, instance, project.spec, cursor)
    assert [r.partition_key for r in requests] == [new] and ok == [True]
    runs, auto = run_automation(defs, instance, auto)
    assert all(r.success for r in runs)
    assert materialized_since(instance, mark) == {
        (f"{p}/raw", new),
        (f"{p}/features", new),
        *downstream_of_cutoff(p, new),
    }
    assert len(set((project.home / "bundles").iterdir()) - bundles_before) == 1

    # identical bytes landed again (new mtime): nothing runs
    mark = latest_storage_id(instance)
    path = project.files[5]
    path.write_bytes(path.read_bytes())
    requests, _, cursor = tick_landing_sensor(defs, instance, project.spec, cursor)
    runs, auto = run_automation(defs, instance, auto)
    assert requests == [] and runs == []
    assert materialized_since(instance, mark) == set()

    # a corrected earlier month: that partition and what reads it, nothing else
    mark = latest_storage_id(instance)
    changed = project.files[4]
    changed.write_text(changed.read_text().replace(",yes\n", ",no\n", 3))
    requests, ok, cursor = tick_landing_sensor(defs, instance, project.spec, cursor)
    assert [r.partition_key for r in requests] == [changed.stem] and ok == [True]
    sha = hashlib.sha256(changed.read_bytes()).hexdigest()
    assert requests[0].run_key == f"{changed.stem}:{sha}"
    run_automation(defs, instance, auto)
    assert materialized_since(instance, mark) == {
        (f"{p}/raw", changed.stem),
        (f"{p}/features", changed.stem),
        *downstream_of_cutoff(p, changed.stem),  # its holdout
        *downstream_of_cutoff(p, new),  # its training window
    }


def test_failed_raw_check_stops_downstream_and_keeps_the_bundle(
    make_project: ProjectFactory, instance: dg.DagsterInstance
) -> None:
    project = make_project("binary", months=6, rows=250)
    p = project.spec.name
    defs, cursor, auto = full_history(project, instance, landed=5)
    bundles = project.home / "bundles"
    before = {d.name: sorted(x.name for x in d.rglob("*")) for d in bundles.iterdir()}

    bad = project.files[5]
    lines = bad.read_text().splitlines()
    bad.write_text("\n".join([lines[0]] + [ln.rsplit(",", 1)[0] + "," for ln in lines[1:]]))
    mark = latest_storage_id(instance)
    requests, ok, cursor = tick_landing_sensor(defs, instance, project.spec, cursor)
    assert [r.partition_key for r in requests] == [bad.stem] and ok == [False]
    runs, _ = run_automation(defs, instance, auto)
    assert runs == []
    assert materialized_since(instance, mark) == set()
    assert {d.name: sorted(x.name for x in d.rglob("*")) for d in bundles.iterdir()} == before
    rows = {(r.asset, r.partition): r for r in project_status(defs, instance, project.spec)}
    assert rows[(f"{p}/raw", bad.stem)].state == "failed_check"
    assert "target" in rows[(f"{p}/raw", bad.stem)].reason
    assert rows[(f"{p}/bundle", bad.stem)].state == "missing"


def states(defs: dg.Definitions, instance: dg.DagsterInstance, project: Project) -> dict:
    rows = project_status(defs, instance, project.spec, home=project.home)
    return {(r.asset, r.partition): r.state for r in rows if r.state != "missing"}


def test_code_changes_mark_exactly_the_affected_assets_stale(
    make_project: ProjectFactory, instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = make_project("binary", months=5, rows=250)
    p = project.spec.name
    defs, _, _ = full_history(project, instance, landed=5)
    assert set(states(defs, instance, project).values()) == {"materialized"}

    # one candidate's params: that candidate's models, then evaluation and bundle
    forest = project.spec.candidates[1]
    changed = Candidate(
        name=forest.name, estimator=forest.estimator, params={**forest.params, "max_depth": 3}
    )
    spec = project.spec.model_copy(update={"candidates": (project.spec.candidates[0], changed)})
    got = states(build_defs(project.settings, [spec]), instance, project)
    stale = {k for k, v in got.items() if v == "stale"}
    cutoffs = [f.stem for f in project.files[3:]]
    assert stale == {
        (f"{p}/{a}", c) for c in cutoffs for a in ("model/forest", "evaluation", "bundle")
    }

    # cleaning code: features and everything downstream, raw untouched
    original = features_defs.code_version
    monkeypatch.setattr(
        features_defs, "code_version", lambda *a, **k: original(*a, **k) + "-edited"
    )
    got = states(build_defs(project.settings, [project.spec]), instance, project)
    stale = {k for k, v in got.items() if v == "stale"}
    assert {a for a, _ in stale} == {
        f"{p}/features",
        f"{p}/model/logreg",
        f"{p}/model/forest",
        f"{p}/evaluation",
        f"{p}/bundle",
    }
    assert all(v == "materialized" for (a, _), v in got.items() if a == f"{p}/raw")


def test_sensor_reports_stray_files_and_reuses_run_keys(
    make_project: ProjectFactory, instance: dg.DagsterInstance
) -> None:
    project = make_project("binary", months=2, rows=100)
    defs = build_defs(project.settings, [project.spec])
    sensor = defs.get_sensor_def(f"{project.spec.name}__landing")
    (project.files[0].parent / "readme.txt").write_text("hello")

    def tick(cursor: str | None) -> dg.SensorResult:
        with dg.build_sensor_context(
            instance=instance, cursor=cursor, definitions=defs, resources=defs.resources
        ) as context:
            return sensor(context)

    first = tick(None)
    keys = sorted(r.run_key for r in first.run_requests)
    assert [k.split(":")[0] for k in keys] == [f.stem for f in project.files]
    # a crash before the cursor was saved: the same tick again asks for the same run keys,
    # which Dagster launches only once
    assert sorted(r.run_key for r in tick(None).run_requests) == keys
    again = tick(first.cursor)
    assert again.run_requests == []
    assert "readme.txt" in (again.skip_reason.skip_message if again.skip_reason else "")


def test_retrain_schedule_skips_when_nothing_changed(
    make_project: ProjectFactory, instance: dg.DagsterInstance
) -> None:
    project = make_project("binary", months=5, rows=250)
    defs, cursor, _ = full_history(project, instance, landed=5)
    schedule = defs.get_schedule_def(f"{project.spec.name}__retrain")
    repo = defs.get_repository_def()

    def evaluate() -> object:
        with dg.build_schedule_context(instance=instance, repository_def=repo) as context:
            return schedule(context)

    assert isinstance(evaluate(), dg.SkipReason)
    changed = project.files[2]
    changed.write_text(changed.read_text().replace(",no\n", ",yes\n", 2))
    tick_landing_sensor(defs, instance, project.spec, cursor)
    request = evaluate()
    assert isinstance(request, dg.RunRequest)
    assert request.partition_key == project.files[-1].stem
