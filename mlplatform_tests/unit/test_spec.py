"""Spec loading: valid specs load; every kind of mistake names file, field path and reason."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from mlplatform.cli import app
from mlplatform.spec import ProjectSpec, SpecError, load_spec
from mlplatform_tests.conftest import example_dict, variant


def write(tmp_path: Path, data: Any, name: str = "proj") -> Path:
    path = tmp_path / f"{name}.yaml"
    if isinstance(data, dict):
        data = {**data, "name": name}
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return path


def problems(tmp_path: Path, data: Any) -> list[tuple[str, str]]:
    with pytest.raises(SpecError) as info:
        load_spec(write(tmp_path, data))
    assert str(tmp_path / "proj.yaml") in str(info.value)
    return info.value.problems


def test_example_spec_loads(churn_spec: ProjectSpec) -> None:
    assert churn_spec.task == "binary"
    assert churn_spec.classes == ["no", "yes"]
    assert "customer_id" not in churn_spec.feature_columns
    assert "segment" not in churn_spec.feature_columns
    with pytest.raises(Exception, match="frozen"):
        churn_spec.target = "x"  # type: ignore[misc]


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_every_task_loads(tmp_path: Path, task: str) -> None:
    spec = load_spec(write(tmp_path, variant(task, "proj")))
    assert spec.task == task


def test_unknown_field_is_named(tmp_path: Path) -> None:
    d = example_dict()
    d["training"]["windw"] = 3
    assert (
        "training.windw",
        "unknown field (check the spelling; see the README's spec reference)",
    ) in problems(tmp_path, d)


def test_wrong_type_and_bad_values_all_reported(tmp_path: Path) -> None:
    d = example_dict()
    d["training"]["window"] = "twelve"
    d["partitions"]["granularity"] = "hourly"
    d["columns"]["tenure_months"]["min"] = 200
    found = dict(problems(tmp_path, d))
    assert "training.window" in found
    assert "partitions.granularity" in found
    assert "greater than max" in found["columns.tenure_months"]


def test_cross_field_problems_name_their_field(tmp_path: Path) -> None:
    d = example_dict()
    d["target"] = "nope"
    d["candidates"][1]["estimator"] = "ridge"
    d["evaluation"]["gates"][0]["metric"] = "rmse"
    found = dict(problems(tmp_path, d))
    assert "is not among 'columns'" in found["target"]
    assert "not a binary estimator" in found["candidates.1.estimator"]
    assert "not a binary metric" in found["evaluation.gates.0.metric"]


def test_date_without_format(tmp_path: Path) -> None:
    d = example_dict()
    del d["columns"]["signup_date"]["format"]
    assert dict(problems(tmp_path, d))["columns.signup_date"].startswith("a date column needs")


def test_name_must_match_file(tmp_path: Path) -> None:
    path = tmp_path / "other.yaml"
    path.write_text(yaml.safe_dump({**example_dict(), "name": "churn"}))
    with pytest.raises(SpecError, match="must equal the file name"):
        load_spec(path)


def test_invalid_yaml(tmp_path: Path) -> None:
    assert "invalid YAML" in problems(tmp_path, "name: [unclosed\n")[0][1]


def test_validate_cli_reports_every_problem(tmp_path: Path) -> None:
    d = example_dict()
    d["candidates"][0]["params"] = {"not_a_param": 1}
    d["quality"]["max_invalid_fraction"] = 3
    bad = write(tmp_path, d, "bad")
    good = write(tmp_path, example_dict(), "good")
    result = CliRunner().invoke(app, ["validate", str(tmp_path)])
    assert result.exit_code == 1
    assert f"{good}: ok" in result.output
    assert str(bad) in result.output
    assert "quality.max_invalid_fraction" in result.output
    fixed = dict(d, quality=example_dict()["quality"])
    write(tmp_path, fixed, "bad")
    result = CliRunner().invoke(app, ["validate", str(bad)])
    assert result.exit_code == 1
    assert "candidates.0.params" in result.output and "not_a_param" in result.output
