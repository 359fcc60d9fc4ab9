"""Shared fixtures: small generated projects (binary, multiclass, regression) in temp homes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlplatform.examples.generate import generate_example
from mlplatform.settings import load_settings
from mlplatform.spec import ProjectSpec, load_spec
from mlplatform_tests.markers import assign_kinds
from mlplatform_tests.projects import EXAMPLE, Project, ProjectFactory, Trained, train_two, variant

pytest_plugins = ["mlplatform_tests.browser", "pytester"]  # `browser`: Debian Chromium


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    assign_kinds(items)


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


@pytest.fixture
def two_bundles(make_project: ProjectFactory, tmp_path: Path) -> Iterator[Trained]:
    import dagster as dg

    project = make_project("binary", months=5, rows=250)
    (tmp_path / "dagster").mkdir()
    with dg.DagsterInstance.local_temp(str(tmp_path / "dagster")) as instance:
        yield train_two(project, instance)


@pytest.fixture(scope="session")
def object_store() -> Iterator[Any]:
    """A real S3-compatible server (SeaweedFS) for the session."""
    from mlplatform_tests.object_store import s3_server

    with s3_server() as store:
        yield store
