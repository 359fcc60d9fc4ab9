"""What the daemon would run, decided from data versions: nothing on a home built by the CLI,
only the newest cutoff for a fresh history, only built cutoffs for a corrected old month, and
only the stale candidates on the retrain schedule."""

from __future__ import annotations

import dagster as dg

from mlplatform.defs.build import build_defs
from mlplatform.defs.runs import landed_partitions, materialize_project, trainable_cutoffs
from mlplatform.defs.ticks import (
    latest_storage_id,
    materialized_since,
    run_automation,
    tick_landing_sensor,
)
from mlplatform.spec import Candidate
from mlplatform_tests.projects import Project, ProjectFactory

TRAINING = ("model/logreg", "model/forest", "evaluation", "bundle")


def built_by_cli(project: Project, instance: dg.DagsterInstance) -> dg.Definitions:
    """What `mlplatform materialize` does by default: every partition, the newest cutoff."""
    defs = build_defs(project.settings, [project.spec])
    landed, _ = landed_partitions(project.spec, project.home)
    newest = trainable_cutoffs(project.spec, landed)[-1:]
    outcomes = materialize_project(defs, instance, project.spec, landed, newest)
    assert all(o.success for o in outcomes)
    return defs


def training_of(p: str, cutoff: str) -> set[tuple[str, str]]:
    return {(f"{p}/{a}", cutoff) for a in TRAINING}


def test_daemon_on_a_cli_built_home_runs_nothing(
    make_project: ProjectFactory, instance: dg.DagsterInstance
) -> None:
    project = make_project("binary", months=6, rows=200)
    p = project.spec.name
    defs = built_by_cli(project, instance)
    # CLI runs name what they build, as the daemon's automation needs to tell that a run built
    # features too (and its checks still ran)
    for run in instance.get_runs():
        assert run.asset_selection, run.job_name
        if run.job_name == f"{p}__data":
            assert run.asset_selection == {dg.AssetKey([p, "raw"]), dg.AssetKey([p, "features"])}
            checks = instance.all_logs(
                run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION
            )
            assert len(checks) >= 6, [
                e.get_dagster_event().asset_check_evaluation_data for e in checks
            ]
    requests, _, cursor = tick_landing_sensor(defs, instance, project.spec, None)  # new cursor
    assert requests == []
    runs, auto = run_automation(defs, instance)  # the daemon's first tick
    runs2, _ = run_automation(defs, instance, auto)
    assert runs == [] and runs2 == []

    # the same bytes written again (new mtime) and raw re-materialized by hand: same data
    # version, so nothing downstream is stale
    mark = latest_storage_id(instance)
    again = project.files[2]
    again.write_bytes(again.read_bytes())
    assert tick_landing_sensor(defs, instance, project.spec, cursor)[0] == []
    result = dg.materialize(
        [*(defs.assets or []), *(defs.asset_checks or [])],
        selection=[dg.AssetKey([project.spec.name, "raw"])],
        partition_key=again.stem,
        instance=instance,
        resources=dict(defs.resources or {}),
    )
    assert result.success
    assert run_automation(defs, instance, auto)[0] == []
    assert materialized_since(instance, mark) == {(f"{project.spec.name}/raw", again.stem)}


def test_a_fresh_history_trains_only_the_newest_cutoff(
    make_project: ProjectFactory, instance: dg.DagsterInstance
) -> None:
    project = make_project("binary", months=6, rows=200)
    p = project.spec.name
    defs = build_defs(project.settings, [project.spec])
    _, auto = run_automation(defs, instance)  # the daemon was running before the files landed
    requests, ok, _ = tick_landing_sensor(defs, instance, project.spec, None)
    assert len(requests) == 6 and all(ok)
    mark = latest_storage_id(instance)
    runs, _ = run_automation(defs, instance, auto)
    assert all(r.success for r in runs)
    assert materialized_since(instance, mark) == training_of(p, project.files[-1].stem)


def test_a_corrected_month_retrains_only_cutoffs_built_before(
    make_project: ProjectFactory, instance: dg.DagsterInstance
) -> None:
    project = make_project("binary", months=6, rows=200)
    p = project.spec.name
    defs = built_by_cli(project, instance)
    _, cursor = tick_landing_sensor(defs, instance, project.spec, None)[1:]
    _, auto = run_automation(defs, instance)

    # month 4 is in the window of the newest cutoff (5) and the holdout of cutoff 4 (never built)
    mark = latest_storage_id(instance)
    changed = project.files[4]
    changed.write_text(changed.read_text().replace(",yes\n", ",no\n", 3))
    requests, ok, cursor = tick_landing_sensor(defs, instance, project.spec, cursor)
    assert [r.partition_key for r in requests] == [changed.stem] and ok == [True]
    runs, auto = run_automation(defs, instance, auto)
    assert all(r.success for r in runs)
    assert materialized_since(instance, mark) == {
        (f"{p}/raw", changed.stem),
        (f"{p}/features", changed.stem),
        *training_of(p, project.files[5].stem),
    }

    # month 1 is read only by cutoffs that were never built: ingest, no training
    mark = latest_storage_id(instance)
    old = project.files[1]
    old.write_text(old.read_text().replace(",no\n", ",yes\n", 3))
    tick_landing_sensor(defs, instance, project.spec, cursor)
    assert run_automation(defs, instance, auto)[0] == []
    assert materialized_since(instance, mark) == {
        (f"{p}/raw", old.stem),
        (f"{p}/features", old.stem),
    }


def test_retrain_schedule_selects_only_stale_candidates(
    make_project: ProjectFactory, instance: dg.DagsterInstance
) -> None:
    project = make_project("binary", months=5, rows=200, schedule={"cron": "0 3 * * 1"})
    p = project.spec.name
    built_by_cli(project, instance)
    forest = project.spec.candidates[1]
    changed = Candidate(
        name=forest.name, estimator=forest.estimator, params={**forest.params, "max_depth": 3}
    )
    spec = project.spec.model_copy(update={"candidates": (project.spec.candidates[0], changed)})
    defs = build_defs(project.settings, [spec])
    with dg.build_schedule_context(
        instance=instance, repository_def=defs.get_repository_def()
    ) as context:
        request = defs.get_schedule_def(f"{p}__retrain")(context)
    assert isinstance(request, dg.RunRequest)
    assert request.partition_key == project.files[-1].stem
    assert sorted(k.to_user_string() for k in request.asset_selection or []) == [
        f"{p}/bundle",
        f"{p}/evaluation",
        f"{p}/model/forest",
    ]
