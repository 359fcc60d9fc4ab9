"""Test projects: the example spec as small binary, multiclass or regression variants, and
helpers that train them on a temporary Dagster instance."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mlplatform.settings import EXAMPLES_DIR, Settings
from mlplatform.spec import ProjectSpec

EXAMPLE = EXAMPLES_DIR / "churn.yaml"


def example_dict() -> dict[str, Any]:
    return yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))


def variant(task: str, name: str) -> dict[str, Any]:
    """The example spec turned into a small binary, multiclass or regression project."""
    d = copy.deepcopy(example_dict())
    d["name"] = name
    d["data"]["landing"] = "{home}/landing/" + name
    d["quality"]["min_rows"] = 50
    d["training"]["window"] = 3
    if task == "binary":
        d["candidates"] = [
            {
                "name": "logreg",
                "estimator": "logistic_regression",
                "params": {"C": 0.5, "max_iter": 300, "class_weight": "balanced"},
            },
            {
                "name": "forest",
                "estimator": "random_forest_classifier",
                "params": {"n_estimators": 25, "max_depth": 6, "n_jobs": 1},
            },
        ]
        d["evaluation"]["gates"] = [{"metric": "roc_auc", "min": 0.55}]
    elif task == "multiclass":
        d["task"] = "multiclass"
        d["target"] = "segment"
        d["columns"]["churned"]["nullable"] = True
        d["columns"]["segment"]["nullable"] = False
        d["features"]["exclude"] = ["churned", "lifetime_value"]
        d["candidates"] = [
            {"name": "logreg", "estimator": "logistic_regression", "params": {"max_iter": 300}},
            {
                "name": "boosted",
                "estimator": "hist_gradient_boosting_classifier",
                "params": {"max_iter": 30},
            },
        ]
        d["evaluation"] = {
            "primary_metric": "log_loss",
            "gates": [{"metric": "accuracy", "min": 0.5}],
        }
    else:
        d["task"] = "regression"
        d["target"] = "lifetime_value"
        d["features"]["exclude"] = ["churned", "segment"]
        d["candidates"] = [
            {"name": "ridge", "estimator": "ridge", "params": {"alpha": 1.0}},
            {
                "name": "forest",
                "estimator": "random_forest_regressor",
                "params": {"n_estimators": 20, "max_depth": 8, "n_jobs": 1},
            },
        ]
        d["evaluation"] = {"primary_metric": "rmse", "gates": [{"metric": "r2", "min": 0.3}]}
    return d


@dataclass
class Project:
    settings: Settings
    spec: ProjectSpec
    files: list[Path]

    @property
    def home(self) -> Path:
        return self.settings.home


ProjectFactory = Callable[..., Project]


@dataclass
class Trained:
    """A small binary project with data ingested and two cutoffs bundled, trained by 'ann'."""

    project: Project
    defs: Any
    instance: Any
    bundles: list[str]


def train_two(project: Project, instance: Any) -> Trained:
    """Ingest every landing file and train (as 'ann') on the last two cutoffs."""
    from mlplatform.defs.build import build_defs, data_job_name, train_job_name

    defs = build_defs(project.settings, [project.spec])
    p = project.spec.name
    for f in project.files:
        job = defs.resolve_job_def(data_job_name(p))
        assert job.execute_in_process(partition_key=f.stem, instance=instance).success
    bundles = []
    for f in project.files[3:]:
        result = defs.resolve_job_def(train_job_name(p)).execute_in_process(
            partition_key=f.stem, instance=instance, tags={"mlplatform/user": "ann"}
        )
        assert result.success
        mat = result.asset_materializations_for_node(f"{p}__bundle")[0]
        bundles.append(str(mat.metadata["bundle_id"].value))
    return Trained(project, defs, instance, bundles)


def production_job(defs: Any, project: str) -> Any:
    """A job that materializes ``<project>/production`` (config: the bundle id)."""
    import dagster as dg

    job = dg.define_asset_job("promote", selection=[dg.AssetKey([project, "production"])])
    return dg.Definitions.merge(defs, dg.Definitions(jobs=[job])).resolve_job_def("promote")
