"""``<project>/production``: materializing it promotes a bundle, if the policy allows.

The Dagster OSS web UI has no authentication, so this asset checks the policy itself against
the ledger (approvals of this exact bundle id, approver != trainer) before it moves
the production pointer (a new ledger row) and the MLflow registry alias ``production``; all of
it is ``promotion.service.promote``, the same code path as the CLI and the serving API.
"""

import json
from types import EllipsisType
from typing import TYPE_CHECKING, Any

import dagster as dg

from mlplatform.defs.versions import code_version
from mlplatform.promotion import service
from mlplatform.promotion.policy import policy_problems
from mlplatform.resources.ledger import LedgerResource
from mlplatform.resources.mlflow import MlflowTracking
from mlplatform.resources.store import ArtifactStore
from mlplatform.spec import ProjectSpec

if TYPE_CHECKING:  # SQLAlchemy and Alembic: imported when the ledger is first used
    from mlplatform.ledger import Ledger


class PromoteConfig(dg.Config):
    """Which bundle to promote; empty: the bundle of the newest cutoff."""

    bundle_id: str = ""


def newest_bundle_id(instance: dg.DagsterInstance, project: str) -> str | None:
    """Bundle id recorded by the newest cutoff's bundle materialization."""
    key = dg.AssetKey([project, "bundle"])
    cutoffs = sorted(instance.get_materialized_partitions(key))
    if not cutoffs:
        return None
    records = instance.get_event_records(
        dg.EventRecordsFilter(
            event_type=dg.DagsterEventType.ASSET_MATERIALIZATION,
            asset_key=key,
            asset_partitions=[cutoffs[-1]],
        ),
        limit=1,
    )
    mat = records[0].asset_materialization if records else None
    value = mat.metadata.get("bundle_id") if mat else None
    return str(value.value) if value is not None else None


def promote_bundle(
    spec: ProjectSpec,
    ledger: "Ledger",
    mlflow: MlflowTracking,
    store: ArtifactStore,
    bundle_id: str,
    expected_from: str | EllipsisType | None = ...,
) -> dict[str, Any]:
    """``promotion.service.promote`` for the asset: a refusal becomes a dg.Failure."""
    try:
        return service.promote(spec, ledger, mlflow, store.bundles_dir, bundle_id, expected_from)
    except service.PromotionRefused as exc:
        raise dg.Failure(str(exc), allow_retries=exc.retryable) from None


def production_asset(spec: ProjectSpec) -> dg.AssetsDefinition:
    @dg.asset(
        key=[spec.name, "production"],
        deps=[dg.AssetKey([spec.name, "bundle"])],
        code_version=code_version(spec, [], ["promotion"]),
        group_name=spec.name,
        kinds={"mlflow"},
        description=f"Pointer to {spec.name}'s production bundle. Materializing it promotes "
        f"a bundle when the {spec.promotion.policy!r} policy allows.",
    )
    def production(
        context: dg.AssetExecutionContext,
        config: PromoteConfig,
        ledger: LedgerResource,
        mlflow: MlflowTracking,
        store: ArtifactStore,
    ) -> dg.MaterializeResult:
        bundle_id = config.bundle_id or newest_bundle_id(context.instance, spec.name)
        if not bundle_id:
            raise dg.Failure(f"{spec.name}: no published bundle to promote yet")
        result = promote_bundle(spec, ledger.ledger, mlflow, store, bundle_id)
        context.log.info(f"{spec.name} production: {json.dumps(result)}")
        return dg.MaterializeResult(metadata=result)

    return production


def approved_requests(
    spec: ProjectSpec,
    decisions: list[Any],
    seen: int,
    current_id: str | None,
    store: ArtifactStore,
    log: Any,
) -> list[dg.RunRequest]:
    """A ``production`` run for each approval after decision ``seen`` whose bundle is usable,
    satisfies the policy and is not production already."""
    from mlplatform.bundles.format import BundleError, verify  # numpy: at the first tick

    p = spec.name
    requests = []
    for decision in decisions:
        if decision.id <= seen or decision.decision != "approve":
            continue
        bundle = decision.bundle_id
        try:
            manifest = verify(store.bundles_dir / bundle)
        except BundleError as exc:
            log.warning(f"{p}: approved bundle {bundle} is unusable: {exc}")
            continue
        on_bundle = [d for d in decisions if d.bundle_id == bundle]
        problems = policy_problems(spec, manifest, on_bundle)
        if problems or bundle == current_id:
            log.info(f"{p}: {bundle} not promoted yet: {'; '.join(problems)}")
            continue
        requests.append(_request(p, bundle, f"approval:{bundle}:{decision.id}"))
    return requests


def promotion_sensor(spec: ProjectSpec) -> dg.SensorDefinition:
    """Turns a new approval (policy: approval) or a new bundle (policy: auto) into a run of
    ``production``; also re-syncs the MLflow alias after a rollback done through the API."""
    p = spec.name
    key = dg.AssetKey([p, "production"])

    @dg.sensor(
        name=f"{p}__promotion",
        target=dg.AssetSelection.assets(key),
        minimum_interval_seconds=spec.automation.sensor_interval_seconds,
        default_status=(
            dg.DefaultSensorStatus.RUNNING
            if spec.automation.enabled
            else dg.DefaultSensorStatus.STOPPED
        ),
    )
    def promotion(
        context: dg.SensorEvaluationContext,
        ledger: LedgerResource,
        mlflow: MlflowTracking,
        store: ArtifactStore,
    ) -> dg.SensorResult:
        cursor: dict[str, Any] = (
            json.loads(context.cursor) if context.cursor else {"decision": 0, "bundle": ""}
        )
        book = ledger.ledger
        requests = []
        # before the ledger and the alias are read: a promotion run that finishes during this
        # tick has moved both by the time it is no longer in flight
        busy = promotion_in_flight(context.instance, key)
        current = book.production(p)
        current_id = current.to_bundle if current else None
        if spec.promotion.policy == "auto":
            newest = newest_bundle_id(context.instance, p)
            if newest and newest != cursor["bundle"] and newest != current_id:
                requests.append(_request(p, newest, f"auto:{newest}"))
            cursor["bundle"] = newest or cursor["bundle"]
        else:
            decisions = book.decisions(p)
            requests += approved_requests(
                spec, decisions, cursor["decision"], current_id, store, context.log
            )
            cursor["decision"] = max([cursor["decision"], *(d.id for d in decisions)])
        if current_id and not requests and mlflow.production_alias(p) != current_id and not busy:
            requests.append(_request(p, current_id, f"sync:{current.id}"))  # type: ignore[union-attr]
        return dg.SensorResult(run_requests=requests, cursor=json.dumps(cursor))

    return promotion


IN_FLIGHT = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


def promotion_in_flight(instance: dg.DagsterInstance, key: dg.AssetKey) -> bool:
    """Is a run of ``production`` queued or running? It writes the ledger row first and the
    MLflow alias next: between the two the alias lags, and a re-sync would be a redundant run."""
    runs = instance.get_runs(
        filters=dg.RunsFilter(statuses=IN_FLIGHT, tags={"mlplatform/trigger": "promotion"}),
        limit=20,
    )
    return any(key in (run.asset_selection or ()) for run in runs)


def _request(project: str, bundle_id: str, run_key: str) -> dg.RunRequest:
    return dg.RunRequest(
        run_key=run_key,
        run_config={"ops": {f"{project}__production": {"config": {"bundle_id": bundle_id}}}},
        tags={"mlplatform/bundle_id": bundle_id, "mlplatform/trigger": "promotion"},
    )
