"""Our MLflow resource: tracking runs for trainings and registered versions for bundles."""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dagster as dg
from pydantic import PrivateAttr

from mlplatform.resources import mlflow_cutoff, mlflow_trials

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

    from mlplatform.steps.search_result import SearchResult, TrialRecord

log = logging.getLogger(__name__)

BUNDLE_ARTIFACT = "bundle"
PRODUCTION_ALIAS = "production"
EXPERIMENT_KIND = mlflow_cutoff.EXPERIMENT_KIND


class MlflowTracking(dg.ConfigurableResource):
    """MLflow tracking and registry; one experiment and one registered model per project."""

    tracking_uri: str
    artifact_root: str

    _client: MlflowClient | None = PrivateAttr(default=None)
    _search_runs: dict[str, str] = PrivateAttr(default_factory=dict)
    _search_down: set[str] = PrivateAttr(default_factory=set)
    _experiments: dict[str, str] = PrivateAttr(default_factory=dict)
    _run_projects: dict[str, str] = PrivateAttr(default_factory=dict)

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
        """The project's experiment (created on first use), typed for MLflow's classic
        runs-and-models view."""
        if project in self._experiments:
            return self._experiments[project]
        exp = self.client.get_experiment_by_name(project)
        if exp is not None:
            found = str(exp.experiment_id)
            key, kind = mlflow_cutoff.EXPERIMENT_KIND
            if exp.tags.get(key) != kind:
                self.client.set_experiment_tag(found, key, kind)
        elif self.tracking_uri.startswith(("http://", "https://")):
            # a tracking server decides where artifacts go (``mlflow server --serve-artifacts``:
            # uploads through the server to its --artifacts-destination)
            found = str(self.client.create_experiment(project, tags=dict([EXPERIMENT_KIND])))
        else:
            location = Path(self.artifact_root) / project
            location.mkdir(parents=True, exist_ok=True)
            found = str(
                self.client.create_experiment(
                    project, artifact_location=location.as_uri(), tags=dict([EXPERIMENT_KIND])
                )
            )
        self._experiments[project] = found
        return found

    def cutoff_run(self, project: str, cutoff: str) -> str:
        """The cutoff's parent run (``<project> <cutoff>``): trainings and searches nest in it."""
        return mlflow_cutoff.cutoff_run(self.client, self.experiment_id(project), project, cutoff)

    def log_training_inputs(self, run_id: str, project: str, manifest: dict[str, Any]) -> None:
        """A training run's window partitions as MLflow dataset inputs."""
        parts = mlflow_cutoff.training_partitions(manifest)
        mlflow_cutoff.log_partitions(self.client, run_id, project, parts, mlflow_cutoff.TRAINING)

    def nest_search(self, study: str, training_run: str) -> None:
        """Put a search's run (and so its trials) under the candidate training it chose for."""
        parent = self._search_runs.get(study)
        if parent is not None:
            self.client.set_tag(parent, mlflow_cutoff.PARENT_TAG, training_run)

    def record_evaluation(
        self,
        project: str,
        cutoff: str,
        evaluation: dict[str, Any],
        training_manifests: dict[str, dict[str, Any]],
        report: Path,
        holdout: mlflow_cutoff.Partition,
    ) -> str:
        """The evaluation in the cutoff's parent run (every model's holdout metrics, winner,
        report, the window and holdout as inputs) and each candidate's holdout metrics in its
        training run; the parent run is closed. Returns the parent run id."""
        parent = self.cutoff_run(project, cutoff)
        models = evaluation["models"]
        scores = {name: s["metrics"] for name, s in models.items()}
        mlflow_cutoff.log_scores(self.client, parent, scores)
        for name, manifest in training_manifests.items():
            run_id = manifest.get("mlflow_run_id")
            if run_id and name in scores:
                mlflow_cutoff.log_scores(self.client, run_id, {"": scores[name]}, "holdout_")
        self.client.set_tag(parent, "mlplatform.winner", evaluation.get("winner") or "none")
        self.client.set_tag(parent, "mlplatform.primary_metric", evaluation["primary_metric"])
        for name, s in models.items():
            self.client.set_tag(parent, f"mlplatform.model.{name}", s.get("kind", ""))
        mlflow_cutoff.log_report(self.client, parent, report)
        window: dict[str, mlflow_cutoff.Partition] = {}
        for manifest in training_manifests.values():
            for part in mlflow_cutoff.training_partitions(manifest):
                window[part.key] = part
        logged = {
            (i.dataset.name, i.dataset.digest)
            for i in getattr(self.client.get_run(parent).inputs, "dataset_inputs", None) or []
        }

        def fresh(parts: list[mlflow_cutoff.Partition]) -> list[mlflow_cutoff.Partition]:
            return [
                p
                for p in parts
                if (f"{project}/{p.key}", (p.sha256 or "unknown")[: mlflow_cutoff.DIGEST_CHARS])
                not in logged
            ]

        log_partitions = mlflow_cutoff.log_partitions
        log_partitions(
            self.client,
            parent,
            project,
            fresh(sorted(window.values(), key=lambda p: p.key)),
            mlflow_cutoff.TRAINING,
        )
        log_partitions(self.client, parent, project, fresh([holdout]), mlflow_cutoff.HOLDOUT)
        self.client.set_terminated(parent, status="FINISHED")
        return parent

    def start_training(
        self, project: str, run_name: str, params: dict[str, Any], tags: dict[str, str]
    ) -> str:
        """Open a training run (so per-epoch metrics stream into it while training runs),
        nested in its cutoff's parent run."""
        cutoff = tags.get("mlplatform.cutoff")
        if cutoff and mlflow_cutoff.PARENT_TAG not in tags:
            tags = {**tags, mlflow_cutoff.PARENT_TAG: self.cutoff_run(project, cutoff)}
        run = self.client.create_run(self.experiment_id(project), run_name=run_name, tags=tags)
        self._run_projects[str(run.info.run_id)] = project
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
        """Final metrics, the training manifest, its window partitions as dataset inputs and
        the model files; then close the run."""
        try:
            project = self._run_projects.get(run_id)
            if project is not None:
                self.log_training_inputs(run_id, project, manifest)
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
        """Log the bundle's MLflow model to the winner's training run and register it as a
        model version that describes itself (cutoff, holdout metrics, training runs; tags with
        bundle id and code version); a bundle registered before (the same training again: same
        id) keeps its version. ``lineage`` (the training's Dagster and MLflow run ids) becomes
        tags of the version."""
        known = self.version_of_bundle(project, manifest["bundle_id"])
        if known is not None:
            return known
        lineage_tags = {f"mlplatform.{k}": v for k, v in (lineage or {}).items()}
        parent = self.cutoff_run(project, manifest["cutoff"])
        run_id = self._winner_run((lineage or {}).get("mlflow_run_id"))
        if run_id is None:
            run = self.client.create_run(
                self.experiment_id(project),
                run_name=f"bundle-{manifest['cutoff']}",
                tags={mlflow_cutoff.PARENT_TAG: parent, "mlplatform.kind": "bundle"},
            )
            run_id = str(run.info.run_id)
            self.client.set_terminated(run_id, status="FINISHED")
        self.client.log_artifacts(run_id, str(bundle_dir / "model"), artifact_path=BUNDLE_ARTIFACT)
        self.client.log_artifact(run_id, str(bundle_dir / "manifest.json"))
        self.client.set_tag(run_id, "mlplatform.bundle_id", manifest["bundle_id"])
        self.client.set_tag(parent, "mlplatform.bundle_id", manifest["bundle_id"])
        try:
            self.client.get_registered_model(project)
        except Exception:
            self.client.create_registered_model(project)
        version = self.client.create_model_version(
            project,
            source=f"runs:/{run_id}/{BUNDLE_ARTIFACT}",
            run_id=run_id,
            tags={
                "bundle_id": manifest["bundle_id"],
                "cutoff": manifest["cutoff"],
                "candidate": str(manifest.get("candidate")),
                "code_version": str(manifest.get("code_version")),
                **lineage_tags,
            },
            description=version_description(project, manifest, run_id, parent),
        )
        self.client.set_tag(run_id, "mlplatform.model_version", str(version.version))
        return str(version.version)

    def _winner_run(self, run_id: str | None) -> str | None:
        """The winner's training run, if it is still in the store."""
        if not run_id or run_id == "None":
            return None
        try:
            return str(self.client.get_run(run_id).info.run_id)
        except Exception:  # deleted, or a store that was reset since the training
            return None

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
            experiment = self.experiment_id(project)
            return mlflow_trials.trial_run(
                self.client, experiment, parent, candidate, cutoff, study, metric, record
            )
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
            logged = mlflow_trials.logged_trials(self.client, self.experiment_id(project), parent)
            for record in result.trials:
                if record.number not in logged:
                    mlflow_trials.trial_run(
                        self.client,
                        self.experiment_id(project),
                        parent,
                        result.candidate,
                        cutoff,
                        result.study_name,
                        result.metric,
                        record,
                    )
            for key in ("metric", "direction", "n_trials", "storage"):
                mlflow_trials.param_once(self.client, parent, key, getattr(result, key))
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
                    mlflow_cutoff.PARENT_TAG: self.cutoff_run(project, cutoff),
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


def version_description(project: str, manifest: dict[str, Any], run_id: str, parent: str) -> str:
    """The registered version's description: what it is, how it scored, where it came from."""
    metrics = manifest.get("metrics") or {}
    scored = ", ".join(
        f"{k} {v:.4f}" for k, v in sorted(metrics.items()) if isinstance(v, int | float)
    )
    window = ", ".join(manifest.get("training_manifest", {}).get("partitions", []))
    return (
        f"{project} bundle {manifest['bundle_id']}: {manifest.get('candidate')} trained for "
        f"cutoff {manifest['cutoff']} on {window}.\n\n"
        f"Holdout metrics ({manifest['cutoff']}): {scored or 'none'}.\n\n"
        f"Training run: {run_id} (nested in the cutoff's run {parent}). "
        f"Code version: {manifest.get('code_version')}."
    )
