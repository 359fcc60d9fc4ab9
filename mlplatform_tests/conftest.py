"""Shared fixtures: small generated projects (binary, multiclass, regression) in temp homes."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlplatform.examples.generate import generate_example
from mlplatform.settings import EXAMPLES_DIR, Settings, load_settings
from mlplatform.spec import ProjectSpec, load_spec

EXAMPLE = EXAMPLES_DIR / "churn.yaml"
pytest_plugins = ["mlplatform_tests.browser"]  # the `browser` fixture (Debian Chromium)


# A test module's default marker, from its folder (a module or test may add its own).
FOLDER_MARKERS = {
    "unit": "unit",
    "serving": "unit",
    "docker": "unit",
    "defs": "dagster",
    "e2e": "e2e",
    "ui": "browser",
    "stack": "stack",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        own = {m.name for m in item.iter_markers()} & set(FOLDER_MARKERS.values())
        if "browser" in getattr(item, "fixturenames", ()) and not own:
            own = {"browser"}
            item.add_marker("browser")
        folder = item.path.parent.name
        if not own and folder in FOLDER_MARKERS:
            item.add_marker(FOLDER_MARKERS[folder])


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


@pytest.fixture
def instance(tmp_path: Path) -> Iterator[Any]:
    """A temporary SQLite Dagster instance, entered (and left) as Dagster expects."""
    import dagster as dg

    (tmp_path / "dagster").mkdir()
    with dg.DagsterInstance.local_temp(str(tmp_path / "dagster")) as instance:
        yield instance


@pytest.fixture(autouse=True)
def _forget_dagster_instance_context() -> Iterator[None]:
    """Dagster keeps the defs-state storage of the last entered instance in a context var;
    a test's temporary instance must not leak into the next test after it is gone."""
    from dagster._core.storage.defs_state.base import _current_storage

    _current_storage.set(None)
    yield
    _current_storage.set(None)


@pytest.fixture
def make_project(tmp_path: Path) -> ProjectFactory:
    """Write a spec variant into a temp projects folder and generate its landing files."""

    def make(
        task: str = "binary",
        months: int = 5,
        rows: int = 300,
        seed: int = 7,
        name: str | None = None,
        **overrides: Any,
    ) -> Project:
        name = name or f"small_{task}"
        data = variant(task, name)
        for key, value in overrides.items():
            data[key] = value
        projects = tmp_path / "projects"
        projects.mkdir(exist_ok=True)
        path = projects / f"{name}.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
        settings = load_settings(home=tmp_path / "home", projects_dir=projects)
        spec = load_spec(path)
        files = generate_example(
            spec.landing_dir(settings.home), months=months, rows_per_month=rows, seed=seed
        )
        return Project(settings, spec, files)

    return make


@pytest.fixture(scope="session")
def churn_spec() -> ProjectSpec:
    return load_spec(EXAMPLE)


@dataclass
class Trained:
    """A small binary project with data ingested and two cutoffs bundled, trained by 'ann'."""

    project: Project
    defs: Any
    instance: Any
    bundles: list[str]


@pytest.fixture
def two_bundles(make_project: ProjectFactory, tmp_path: Path) -> Iterator[Trained]:
    import dagster as dg

    project = make_project("binary", months=5, rows=250)
    (tmp_path / "dagster").mkdir()
    with dg.DagsterInstance.local_temp(str(tmp_path / "dagster")) as instance:
        yield _train_two(project, instance)


def _train_two(project: Project, instance: Any) -> Trained:
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
