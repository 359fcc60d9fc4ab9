"""Build Dagster ``Definitions`` for every project spec in the projects folder."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from mlplatform.defs.alerts import alerts_sensor
from mlplatform.defs.automation import automation_sensor, condition_for, data_condition
from mlplatform.defs.bundles import bundle_asset
from mlplatform.defs.evaluation import evaluation_asset
from mlplatform.defs.features import drift_check, features_asset
from mlplatform.defs.models import model_asset
from mlplatform.defs.monitoring import decay_sensor, monitoring_asset, monitoring_schedule
from mlplatform.defs.monitoring_labels import labels_sensor
from mlplatform.defs.predictions import predictions_asset, score_new_data
from mlplatform.defs.production import production_asset, promotion_sensor
from mlplatform.defs.raw import raw_asset
from mlplatform.defs.schedules import retrain_schedule
from mlplatform.defs.sensors import landing_sensor
from mlplatform.resources.ledger import LedgerResource
from mlplatform.resources.mlflow import MlflowTracking
from mlplatform.resources.model_io import ModelIOManager
from mlplatform.resources.search import SearchStorage
from mlplatform.resources.store import ArtifactStore, ParquetIOManager
from mlplatform.resources.window_io import ParquetFilesIOManager
from mlplatform.settings import Settings
from mlplatform.spec import ProjectSpec, load_specs


def data_job_name(project: str) -> str:
    return f"{project}__data"


def train_job_name(project: str) -> str:
    return f"{project}__train"


def project_assets(
    spec: ProjectSpec, home: Path, ledger_url: str = ""
) -> list[dg.AssetsDefinition]:
    """raw -> features -> model/<candidate> -> evaluation -> bundle -> production for one
    project, and raw -> predictions, with the automation conditions of
    ``mlplatform.defs.automation``: ``raw`` follows the landing sensor, ``production`` the
    promotion sensor, ``predictions`` each new ``raw`` while a bundle is production (its
    condition reads the ledger at ``ledger_url``; without one it is not automated)."""
    training = condition_for(spec, home)
    data = data_condition(spec)
    return [
        raw_asset(spec),
        _automated(features_asset(spec), data),
        *(_automated(model_asset(spec, c), training) for c in spec.candidates),
        _automated(evaluation_asset(spec), training),
        _automated(bundle_asset(spec), training),
        production_asset(spec),
        monitoring_asset(spec),
        _automated(
            predictions_asset(spec), score_new_data(spec, ledger_url) if ledger_url else None
        ),
    ]


def _automated(
    asset: dg.AssetsDefinition, condition: dg.AutomationCondition | None
) -> dg.AssetsDefinition:
    return asset if condition is None else asset.with_attributes(automation_condition=condition)


def project_jobs(spec: ProjectSpec) -> list[dg.UnresolvedAssetJobDefinition]:
    """A data job (raw, features) per data partition and a training job per cutoff."""
    p = spec.name
    return [
        dg.define_asset_job(
            data_job_name(p),
            selection=dg.AssetSelection.assets([p, "raw"], [p, "features"]),
            description=f"Ingest and clean one partition of {p}.",
        ),
        dg.define_asset_job(
            train_job_name(p),
            selection=dg.AssetSelection.key_prefixes([p, "model"])
            | dg.AssetSelection.assets([p, "evaluation"], [p, "bundle"]),
            description=f"Train, evaluate and bundle {p} for one cutoff.",
        ),
    ]


def resources(settings: Settings, specs: list[ProjectSpec]) -> dict[str, object]:
    parquet = ParquetIOManager(base_path=str(settings.assets_dir))
    return {
        "parquet_io": parquet,
        "io_manager": parquet,  # anything not routed elsewhere is a DataFrame or fails: no pickle
        "model_io": ModelIOManager(home=str(settings.home), specs=specs),
        "parquet_files": ParquetFilesIOManager(base_path=str(settings.assets_dir)),
        "store": ArtifactStore(
            home=str(settings.home),
            assets_dir=str(settings.assets_dir),
            serve_url=settings.serve_url,
            prediction_log_url=settings.prediction_log.url,
        ),
        "ledger": LedgerResource(url=settings.ledger),
        "search_db": SearchStorage(url=settings.search),
        "mlflow": MlflowTracking(
            tracking_uri=settings.tracking_uri, artifact_root=str(settings.mlflow_artifacts_dir)
        ),
    }


def train_targets(spec: ProjectSpec) -> list[dg.AssetKey]:
    p = spec.name
    return [
        *(dg.AssetKey([p, "model", c.name]) for c in spec.candidates),
        dg.AssetKey([p, "evaluation"]),
        dg.AssetKey([p, "bundle"]),
    ]


def build_defs(settings: Settings, specs: list[ProjectSpec] | None = None) -> dg.Definitions:
    """Definitions for the given specs (default: every spec in ``settings.projects_dir``)."""
    specs = load_specs(settings.projects_dir) if specs is None else specs
    schedules = [retrain_schedule(spec, train_targets(spec)) for spec in specs]
    return dg.Definitions(
        assets=[a for spec in specs for a in project_assets(spec, settings.home, settings.ledger)],
        asset_checks=[drift_check(spec) for spec in specs],
        jobs=[j for spec in specs for j in project_jobs(spec)],
        sensors=[
            s
            for spec in specs
            for s in (
                landing_sensor(spec),
                automation_sensor(spec),
                promotion_sensor(spec),
                decay_sensor(spec, train_targets(spec)),
                labels_sensor(spec),
                alerts_sensor(spec),
            )
        ],
        schedules=[
            *(s for s in schedules if s is not None),
            *(monitoring_schedule(spec) for spec in specs),
        ],
        resources=resources(settings, specs),
        # steps of one run share a process: a subprocess per step costs seconds of imports
        executor=dg.in_process_executor,
    )
