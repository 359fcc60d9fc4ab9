"""Promotion through the ``production`` asset: the policy is enforced by the asset itself, the
ledger and the MLflow alias move together, and racing promotions have exactly one winner."""

from __future__ import annotations

import threading
from pathlib import Path

import dagster as dg
import pytest

from mlplatform.defs.production import promote_bundle
from mlplatform.ledger import Ledger
from mlplatform.resources.mlflow import MlflowTracking
from mlplatform.resources.store import ArtifactStore
from mlplatform_tests.projects import Project, Trained, production_job


@pytest.fixture
def trained(two_bundles: Trained) -> tuple:
    t = two_bundles
    return t.project, t.defs, t.instance, t.bundles


def promote(
    defs: dg.Definitions, instance: dg.DagsterInstance, project: Project, bundle_id: str = ""
) -> dg.ExecuteInProcessResult:
    p = project.spec.name
    return production_job(defs, p).execute_in_process(
        instance=instance,
        raise_on_error=False,
        run_config={"ops": {f"{p}__production": {"config": {"bundle_id": bundle_id}}}},
    )


def failure_text(result: dg.ExecuteInProcessResult) -> str:
    return " ".join(
        str(e.event_specific_data.error)
        for e in result.all_events
        if e.event_type_value == "STEP_FAILURE"
    )


def resources(project: Project) -> tuple[Ledger, MlflowTracking, ArtifactStore]:
    s = project.settings
    return (
        Ledger(s.ledger),
        MlflowTracking(tracking_uri=s.tracking_uri, artifact_root=str(s.mlflow_artifacts_dir)),
        ArtifactStore(home=str(s.home), assets_dir=str(s.assets_dir)),
    )


def test_policy_is_enforced_by_the_asset(trained: tuple) -> None:
    project, defs, instance, (first, second) = trained
    ledger, mlflow, _ = resources(project)
    p = project.spec.name

    result = promote(defs, instance, project)  # no approval at all: refused, nothing moves
    assert not result.success and "needs 1 approval" in failure_text(result)
    assert ledger.production(p) is None and mlflow.production_alias(p) is None

    ledger.record_decision(p, second, "approve", "ann", "my own model")
    result = promote(defs, instance, project)  # newest bundle = second
    assert not result.success and "ann triggered the training" in failure_text(result)
    assert ledger.production(p) is None

    ledger.record_decision(p, second, "approve", "bob", "looks good")
    assert promote(defs, instance, project).success
    assert ledger.production(p).to_bundle == second
    assert mlflow.production_alias(p) == second

    ledger.record_decision(p, first, "reject", "bob", "worse slices")
    result = promote(defs, instance, project, first)
    assert not result.success and "rejected by bob" in failure_text(result)
    assert ledger.production(p).to_bundle == second and mlflow.production_alias(p) == second


def test_sensor_turns_an_approval_into_a_promotion(trained: tuple) -> None:
    project, defs, instance, (_, second) = trained
    ledger, _, _ = resources(project)
    p = project.spec.name
    sensor = defs.get_sensor_def(f"{p}__promotion")

    def tick(cursor: str | None) -> dg.SensorResult:
        with dg.build_sensor_context(
            instance=instance, cursor=cursor, definitions=defs, resources=defs.resources
        ) as context:
            return sensor(context)

    first = tick(None)
    assert first.run_requests == []
    ledger.record_decision(p, second, "approve", "bob", "ship it")
    result = tick(first.cursor)
    (request,) = result.run_requests
    assert request.tags["mlplatform/bundle_id"] == second
    config = request.run_config["ops"][f"{p}__production"]["config"]
    assert promote(defs, instance, project, config["bundle_id"]).success
    assert ledger.production(p).to_bundle == second
    assert tick(result.cursor).run_requests == []

    # a rollback done elsewhere (API, CLI) leaves the alias behind: the sensor re-syncs it ...
    ledger.promote(p, "0" * 64, "bob", "drill", kind="rollback", expected_from=second)
    # ... but not while a promotion run is queued or running (it sets the alias itself, after
    # the ledger row: a tick in between would request a redundant run)
    running = instance.create_run_for_job(
        production_job(defs, p),
        run_config=config and {"ops": {f"{p}__production": {"config": config}}},
        tags={"mlplatform/trigger": "promotion"},
        status=dg.DagsterRunStatus.STARTED,
        asset_selection=frozenset({dg.AssetKey([p, "production"])}),
    )
    assert tick(result.cursor).run_requests == []
    instance.delete_run(running.run_id)
    assert tick(result.cursor).run_requests[0].tags["mlplatform/bundle_id"] == "0" * 64


def test_racing_promotions_have_one_winner(trained: tuple) -> None:
    project, _, _, (first, second) = trained
    ledger, mlflow, store = resources(project)
    p = project.spec.name
    for bundle in (first, second):
        ledger.record_decision(p, bundle, "approve", "bob", "ok")
    barrier = threading.Barrier(2)
    outcomes: dict[str, object] = {}

    def race(bundle: str) -> None:
        own = Ledger(project.settings.ledger)
        barrier.wait()
        try:
            outcomes[bundle] = promote_bundle(  # both decided with no production yet
                project.spec, own, mlflow, store, bundle, expected_from=None
            )
        except dg.Failure as exc:
            outcomes[bundle] = exc

    threads = [threading.Thread(target=race, args=(b,)) for b in (first, second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [b for b, o in outcomes.items() if isinstance(o, dict)]
    losers = [o for o in outcomes.values() if isinstance(o, dg.Failure)]
    assert len(winners) == 1 and len(losers) == 1
    assert "another promotion won" in str(losers[0])
    assert ledger.production(p).to_bundle == winners[0] == mlflow.production_alias(p)
    assert len(ledger.history(p)) == 1


def test_promoting_a_bundle_published_without_model_version_registers_it(
    trained: tuple,
) -> None:
    """The state a build killed between publishing and registering (older code) leaves: the
    promotion registers the bundle first, so the alias can follow the ledger."""
    project, defs, instance, (_, second) = trained
    ledger, mlflow, _ = resources(project)
    p = project.spec.name
    version = mlflow.version_of_bundle(p, second)
    assert version is not None
    mlflow.client.delete_model_version(p, version)
    assert mlflow.version_of_bundle(p, second) is None

    ledger.record_decision(p, second, "approve", "bob", "ok")
    result = promote(defs, instance, project, second)
    assert result.success, failure_text(result)
    assert ledger.production(p).to_bundle == second == mlflow.production_alias(p)
    assert mlflow.version_of_bundle(p, second) not in (None, version)


def test_a_bundle_that_cannot_be_registered_is_not_published(
    trained: tuple, tmp_path: Path
) -> None:
    """Registration comes before publishing: with MLflow failing, the build publishes nothing
    (and leaves no staging folder), so no bundle without a model version can be approved."""
    import shutil

    from mlplatform.defs.build import build_defs, train_job_name

    project, _, instance, (_, second) = trained
    p = project.spec.name
    shutil.rmtree(project.settings.bundles_dir / second)
    (tmp_path / "not-a-folder").write_text("x")
    broken = project.settings.model_copy(
        update={"mlflow_tracking_uri": f"sqlite:///{tmp_path / 'not-a-folder' / 'mlflow.db'}"}
    )
    defs = build_defs(broken, [project.spec])
    result = defs.resolve_job_def(train_job_name(p)).execute_in_process(
        partition_key=project.files[-1].stem,
        instance=instance,
        asset_selection=[dg.AssetKey([p, "bundle"])],
        raise_on_error=False,
    )
    assert not result.success
    assert not (project.settings.bundles_dir / second).exists()
    assert list(project.settings.staging_dir.iterdir()) == []
