"""Our MLflow resource: tracking runs for trainings and registered versions for bundles."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import dagster as dg
from mlflow.tracking import MlflowClient
from pydantic import PrivateAttr

BUNDLE_ARTIFACT = "bundle"
PRODUCTION_ALIAS = "production"


class MlflowTracking(dg.ConfigurableResource):
    """MLflow tracking and registry; one experiment and one registered model per project."""

    tracking_uri: str
    artifact_root: str

    _client: MlflowClient | None = PrivateAttr(default=None)

    @property
    def client(self) -> MlflowClient:
        if self._client is None:
            self._client = MlflowClient(
                tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri
            )
        return self._client

    def experiment_id(self, project: str) -> str:
        exp = self.client.get_experiment_by_name(project)
        if exp is not None:
            return str(exp.experiment_id)
        if self.tracking_uri.startswith(("http://", "https://")):
            # a tracking server decides where artifacts go (``mlflow server --serve-artifacts``:
            # uploads through the server to its --artifacts-destination)
            return str(self.client.create_experiment(project))
        location = Path(self.artifact_root) / project
        location.mkdir(parents=True, exist_ok=True)
        return str(self.client.create_experiment(project, artifact_location=location.as_uri()))

    def start_training(
        self, project: str, run_name: str, params: dict[str, Any], tags: dict[str, str]
    ) -> str:
        """Open a training run (so per-epoch metrics stream into it while training runs)."""
        run = self.client.create_run(self.experiment_id(project), run_name=run_name, tags=tags)
        for key, value in params.items():
            self.client.log_param(run.info.run_id, key, str(value)[:6000])
        return str(run.info.run_id)

    def log_step(self, run_id: str, metrics: dict[str, float], step: int) -> None:
        """Step metrics of an iterative trainer (one call per epoch)."""
        for key, value in metrics.items():
            if value == value:
                self.client.log_metric(run_id, key, float(value), step=step)

    def finish_training(
        self,
        run_id: str,
        metrics: dict[str, float],
        manifest: dict[str, Any],
        model_files: list[Path] | None = None,
    ) -> None:
        """Final metrics, the training manifest and the model files; then close the run."""
        try:
            for key, value in metrics.items():
                if value == value:
                    self.client.log_metric(run_id, key, float(value))
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "training_manifest.json"
                path.write_text(json.dumps(manifest, indent=2, default=str), encoding="utf-8")
                self.client.log_artifact(run_id, str(path))
            for model_file in model_files or []:
                self.client.log_artifact(run_id, str(model_file), artifact_path="model")
        except Exception:
            self.fail_run(run_id)
            raise
        self.client.set_terminated(run_id, status="FINISHED")

    def fail_run(self, run_id: str) -> None:
        self.client.set_terminated(run_id, status="FAILED")

    def register_bundle(self, project: str, bundle_dir: Path, manifest: dict[str, Any]) -> str:
        """Log the bundle's MLflow model to a run and register it as a model version."""
        run = self.client.create_run(
            self.experiment_id(project),
            run_name=f"bundle-{manifest['cutoff']}",
            tags={"mlplatform.bundle_id": manifest["bundle_id"], "mlplatform.kind": "bundle"},
        )
        run_id = run.info.run_id
        self.client.log_artifacts(run_id, str(bundle_dir / "model"), artifact_path=BUNDLE_ARTIFACT)
        self.client.log_artifact(run_id, str(bundle_dir / "manifest.json"))
        self.client.set_terminated(run_id, status="FINISHED")
        try:
            self.client.get_registered_model(project)
        except Exception:
            self.client.create_registered_model(project)
        version = self.client.create_model_version(
            project,
            source=f"runs:/{run_id}/{BUNDLE_ARTIFACT}",
            run_id=run_id,
            tags={"bundle_id": manifest["bundle_id"], "cutoff": manifest["cutoff"]},
        )
        return str(version.version)

    def version_of_bundle(self, project: str, bundle_id: str) -> str | None:
        """The registered model version holding a bundle (None if it was never registered)."""
        versions = self.client.search_model_versions(
            f"name = '{project}' and tags.bundle_id = '{bundle_id}'"
        )
        return str(versions[0].version) if versions else None

    def set_production_alias(self, project: str, bundle_id: str) -> str | None:
        """Point the registry alias ``production`` at the bundle's version (idempotent)."""
        version = self.version_of_bundle(project, bundle_id)
        if version is not None:
            self.client.set_registered_model_alias(project, PRODUCTION_ALIAS, version)
        return version

    def production_alias(self, project: str) -> str | None:
        """The bundle id the registry alias ``production`` points at, if any."""
        try:
            version = self.client.get_model_version_by_alias(project, PRODUCTION_ALIAS)
        except Exception:  # no registered model or no alias yet
            return None
        return version.tags.get("bundle_id")
