"""Our MLflow resource: tracking runs for trainings and registered versions for bundles."""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dagster as dg
from pydantic import PrivateAttr

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

    from mlplatform.steps.search_result import SearchResult, TrialRecord

log = logging.getLogger(__name__)

BUNDLE_ARTIFACT = "bundle"
TRIAL_STATUS = {"COMPLETE": "FINISHED", "PRUNED": "KILLED", "FAIL": "FAILED"}
PRODUCTION_ALIAS = "production"


class MlflowTracking(dg.ConfigurableResource):
    """MLflow tracking and registry; one experiment and one registered model per project."""

    tracking_uri: str
    artifact_root: str

    _client: MlflowClient | None = PrivateAttr(default=None)
    _search_runs: dict[str, str] = PrivateAttr(default_factory=dict)
    _search_down: set[str] = PrivateAttr(default_factory=set)

    @property
    def client(self) -> MlflowClient:
        if self._client is None:
            # imported on first use: mlflow costs ~1 s and ~100 MB, and most runs never log
            from mlflow.tracking import MlflowClient

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

    def register_bundle(
        self,
        project: str,
        bundle_dir: Path,
        manifest: dict[str, Any],
        lineage: dict[str, str] | None = None,
    ) -> str:
        """Log the bundle's MLflow model to a run and register it as a model version; a bundle
        registered before (the same training again: same id) keeps its version.
        ``lineage`` (the training's Dagster and MLflow run ids) becomes tags of the version."""
        known = self.version_of_bundle(project, manifest["bundle_id"])
        if known is not None:
            return known
        lineage_tags = {f"mlplatform.{k}": v for k, v in (lineage or {}).items()}
        run = self.client.create_run(
            self.experiment_id(project),
            run_name=f"bundle-{manifest['cutoff']}",
            tags={
                "mlplatform.bundle_id": manifest["bundle_id"],
                "mlplatform.kind": "bundle",
                **lineage_tags,
            },
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
            tags={"bundle_id": manifest["bundle_id"], "cutoff": manifest["cutoff"], **lineage_tags},
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

    # Hyperparameter searches: one parent run per Optuna study (found again by its tag when a
    # search resumes), one nested child run per finished trial. Logging never fails a search:
    # MLflow errors are logged as warnings and the methods return None.

    def log_trial(
        self,
        project: str,
        candidate: str,
        cutoff: str,
        study: str,
        metric: str,
        record: TrialRecord,
    ) -> str | None:
        """Stream one finished trial (an ``on_trial`` callback) as a nested run; idempotent.

        After one failure the study's further trials are not streamed (an unreachable server
        would cost minutes of retries per trial); ``log_search`` catches up at the end."""
        if study in self._search_down:
            return None
        try:
            parent = self._search_parent(project, candidate, cutoff, study)
            return self._trial_run(project, parent, candidate, cutoff, study, metric, record)
        except Exception:
            self._search_down.add(study)
            log.warning(
                "MLflow: could not log trial %s of %s; not streaming its other trials",
                record.number,
                study,
                exc_info=True,
            )
            return None

    def log_search(self, project: str, cutoff: str, result: SearchResult) -> str | None:
        """The search's parent run with every finished trial nested under it (trials already
        streamed by ``log_trial`` are not logged twice); returns the parent run id."""
        try:
            parent = self._search_parent(project, result.candidate, cutoff, result.study_name)
            logged = self._logged_trials(project, parent)
            for record in result.trials:
                if record.number not in logged:
                    self._trial_run(
                        project,
                        parent,
                        result.candidate,
                        cutoff,
                        result.study_name,
                        result.metric,
                        record,
                    )
            for key in ("metric", "direction", "n_trials", "storage"):
                self._param_once(parent, key, getattr(result, key))
            for key, value in result.best_params.items():
                self.client.set_tag(parent, f"best.{key}", str(value)[:5000])
            self.client.set_tag(parent, "mlplatform.best_trial", str(result.best_trial))
            step = result.finished
            self.client.log_metric(parent, f"best_{result.metric}", result.best_value, step=step)
            for key in ("complete", "pruned", "failed", "resumed_from", "ran"):
                self.client.log_metric(parent, key, float(getattr(result, key)), step=step)
            self.client.set_terminated(parent, status="FINISHED")
            return parent
        except Exception:
            log.warning("MLflow: could not log search %s", result.study_name, exc_info=True)
            return None

    def _search_parent(self, project: str, candidate: str, cutoff: str, study: str) -> str:
        if study in self._search_runs:
            return self._search_runs[study]
        experiment = self.experiment_id(project)
        found = self.client.search_runs(
            [experiment], filter_string=f"tags.`mlplatform.study` = '{study}'", max_results=1
        )
        if found:
            run_id = str(found[0].info.run_id)
        else:
            run = self.client.create_run(
                experiment,
                run_name=f"{candidate}-{cutoff}-search",
                tags={
                    "mlplatform.kind": "search",
                    "mlplatform.study": study,
                    "mlplatform.candidate": candidate,
                    "mlplatform.cutoff": cutoff,
                },
            )
            run_id = str(run.info.run_id)
            self.client.log_param(run_id, "study", study)
        self._search_runs[study] = run_id
        return run_id

    def _logged_trials(self, project: str, parent: str) -> set[int]:
        runs = self.client.search_runs(
            [self.experiment_id(project)],
            filter_string=f"tags.`mlflow.parentRunId` = '{parent}'",
            max_results=50_000,
        )
        return {
            int(r.data.tags["mlplatform.trial"]) for r in runs if "mlplatform.trial" in r.data.tags
        }

    def _param_once(self, run_id: str, key: str, value: object) -> None:
        if key not in self.client.get_run(run_id).data.params:
            self.client.log_param(run_id, key, str(value)[:6000])

    def _trial_run(
        self,
        project: str,
        parent: str,
        candidate: str,
        cutoff: str,
        study: str,
        metric: str,
        record: TrialRecord,
    ) -> str | None:
        status = TRIAL_STATUS.get(record.state)
        if status is None:  # still RUNNING (maybe in another process): not logged yet
            return None
        existing = self.client.search_runs(
            [self.experiment_id(project)],
            filter_string=f"tags.`mlflow.parentRunId` = '{parent}' "
            f"and tags.`mlplatform.trial` = '{record.number}'",
            max_results=1,
        )
        if existing:
            return str(existing[0].info.run_id)
        tags = {
            "mlflow.parentRunId": parent,
            "mlplatform.kind": "trial",
            "mlplatform.study": study,
            "mlplatform.trial": str(record.number),
            "mlplatform.candidate": candidate,
            "mlplatform.cutoff": cutoff,
            "optuna.state": record.state,
        }
        if record.error:
            tags["mlplatform.error"] = record.error[:5000]
        start = int(record.started * 1000) if record.started else None
        run = self.client.create_run(
            self.experiment_id(project),
            run_name=f"{candidate}-{cutoff}-trial-{record.number}",
            tags=tags,
            start_time=start,
        )
        run_id = str(run.info.run_id)
        for key, value in record.params.items():
            self.client.log_param(run_id, key, str(value)[:6000])
        for step, value in sorted(record.intermediate.items()):
            if value == value:
                self.client.log_metric(run_id, f"val_{metric}", value, step=step)
        if record.value is not None and record.value == record.value:
            self.client.log_metric(run_id, metric, record.value)
        if record.seconds is not None:
            self.client.log_metric(run_id, "seconds", record.seconds)
        end = int(record.finished * 1000) if record.finished else None
        self.client.set_terminated(run_id, status=status, end_time=end)
        return run_id
