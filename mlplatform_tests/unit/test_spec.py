"""Spec loading: valid specs load; every kind of mistake names file, field path and reason."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from mlplatform.cli import app
from mlplatform.spec import ProjectSpec, SpecError, load_spec
from mlplatform_tests.projects import example_dict, variant


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


def test_validate_reports_three_mistakes_in_one_run(tmp_path: Path) -> None:
    d = example_dict()
    d["quality"]["max_invalid_fraction"] = 3  # a field error
    d["target"] = "nope"  # a cross-field error, checked although a field failed
    d["partitions"]["start"] = "2012-01-15"  # a start that is no monthly key
    d["candidates"][0]["params"]["C"] = -1  # an estimator param fit() would refuse
    result = CliRunner().invoke(app, ["validate", str(write(tmp_path, d))])
    assert result.exit_code == 1
    assert "4 problem(s)" in result.output
    assert "quality.max_invalid_fraction: Input should be less than or equal to 1" in result.output
    assert "target: 'nope' is not among 'columns'" in result.output
    assert "partitions.start: not a period start" in result.output
    assert "candidates.0.params.C: logistic_regression: The 'C' parameter" in result.output


def test_cross_field_checks_run_when_a_field_fails(tmp_path: Path) -> None:
    d = example_dict()
    d["name"] = "other"
    d["training"]["window"] = 0
    d["features"]["exclude"] = ["nope"]
    d["features"]["date_parts"]["plan"] = ["year"]
    d["evaluation"]["primary_metric"] = "rmse"
    d["columns"]["tenure_months"]["min"] = 500  # a bad column does not hide the others' checks
    path = tmp_path / "proj.yaml"
    path.write_text(yaml.safe_dump(d))
    with pytest.raises(SpecError) as info:
        load_spec(path)
    found = dict(info.value.problems)
    assert "must equal the file name" in found["name"]
    assert "training.window" in found
    assert found["features.exclude"] == "'nope' is not among 'columns'"
    assert found["features.date_parts"] == "'plan' is not a date column"
    assert "greater than max" in found["columns.tenure_months"]
    assert "not a binary metric" in found["evaluation.primary_metric"]


CRASHING = [
    ({"data": {"filename": "{partition}{x}.csv"}}, "data.filename", "unknown placeholder(s) {x}"),
    ({"data": {"filename": "{partition}}.csv"}}, "data.filename", "Single '}'"),
    ({"data": {"filename": "{partition:%Y}.csv"}}, "data.filename", "without a format spec"),
    ({"data": {"filename": "in/{partition}.csv"}}, "data.filename", "not a path"),
    ({"training": {"window": 1000000}}, "training.window", "reach past 2999-12-31"),
    (
        {"partitions": {"granularity": "daily", "start": "0001-01-01"}},
        "partitions.start",
        "0001-01-01 is out of range",
    ),
    ({"partitions": {"start": "9999-12-01"}}, "partitions.start", "out of range"),
    ({"partitions": {"start": "2012-01-15"}}, "partitions.start", "use 2012-01-01"),
    ({"partitions": {"end": "2022-01-01"}}, "partitions.end", "must be after 'start'"),
    ({"partitions": {"end": "2024-06-15"}}, "partitions.end", "use 2024-06-01"),
    ({"partitions": {"end": "3000-01-01"}}, "partitions.end", "out of range"),
    ({"partitions": {"end": "2023-06-01"}}, "training.window", "no cutoff has a full window"),
    (
        {"partitions": {"week_starts_on": "monday"}},
        "partitions.week_starts_on",
        "weekly partitions only",
    ),
    ({"schedule": {"timezone": "Mars/Olympus"}}, "schedule.timezone", "unknown time zone"),
    ({"schedule": {"cron": "0 24 * * *"}}, "schedule.cron", "'24' is not a valid hour (0-23"),
    ({"schedule": {"cron": "a b c d e"}}, "schedule.cron", "'a' is not a valid minute"),
    ({"data": {"encoding": "rot13"}}, "data.encoding", "unknown text encoding 'rot13'"),
    ({"data": {"delimiter": '"'}}, "data.delimiter", "cannot separate fields"),
    (
        {"columns": {"signup_date_year": {"type": "float"}}},
        "features.date_parts.signup_date",
        "derived feature signup_date_year has the name of a column",
    ),
]


@pytest.mark.parametrize(("change", "where", "reason"), CRASHING)
def test_validate_refuses_what_would_crash_later(
    tmp_path: Path, change: dict[str, dict[str, Any]], where: str, reason: str
) -> None:
    d = example_dict()
    for section, fields in change.items():
        d[section] = {**d[section], **fields}
    result = CliRunner().invoke(app, ["validate", str(write(tmp_path, d))])
    assert result.exit_code == 1
    lines = [line.strip() for line in result.output.splitlines()]
    assert any(line.startswith(f"{where}: ") and reason in line for line in lines), lines


def weekly(start: str, **partitions: str) -> dict[str, Any]:
    d = example_dict()
    d["partitions"] = {"granularity": "weekly", "start": start, **partitions}
    return d


def test_weekly_keys_start_on_sunday_by_default(tmp_path: Path) -> None:
    from mlplatform.defs.partitions import data_partitions

    spec = load_spec(write(tmp_path, weekly("2023-12-31")))  # a Sunday
    assert data_partitions(spec).get_partition_keys()[:2] == ["2023-12-31", "2024-01-07"]
    found = dict(problems(tmp_path, weekly("2024-01-01")))  # a Monday
    assert found["partitions.start"] == (
        "not a period start: 2024-01-01 is a Monday and weekly keys start on Sunday "
        "(partitions.week_starts_on); use 2023-12-31 or set partitions.week_starts_on: monday"
    )


def test_weekly_keys_on_the_chosen_weekday_map_files(tmp_path: Path) -> None:
    from mlplatform.defs.partitions import cutoff_partitions, data_partitions, landed_partitions

    d = weekly("2024-01-01", week_starts_on="monday", end="2024-04-01")
    d["data"]["landing"] = str(tmp_path / "landing")
    spec = load_spec(write(tmp_path, d))
    keys = data_partitions(spec).get_partition_keys()
    assert keys[:3] == ["2024-01-01", "2024-01-08", "2024-01-15"] and keys[-1] == "2024-03-25"
    assert cutoff_partitions(spec).get_partition_keys()[0] == "2024-03-25"  # window 12
    (tmp_path / "landing").mkdir()
    for name in ("2024-01-01.csv", "2024-01-08.csv", "2024-01-07.csv"):
        (tmp_path / "landing" / name).write_text("x\n")
    found, stray = landed_partitions(spec, tmp_path)
    assert found == ["2024-01-01", "2024-01-08"]
    assert [p.name for p in stray] == ["2024-01-07.csv"]
    sunday = weekly("2023-12-31", week_starts_on="monday")
    assert (
        "is a Sunday and weekly keys start on Monday"
        in dict(problems(tmp_path, sunday))["partitions.start"]
    )


@pytest.mark.parametrize("cron", ["*/15 * * * *", "0 0 1-7 jan-mar mon", "5,10 0-23/2 L * 1#2"])
def test_cron_forms_dagster_accepts_pass(tmp_path: Path, cron: str) -> None:
    d = example_dict()
    d["schedule"]["cron"] = cron
    assert load_spec(write(tmp_path, d)).schedule is not None


def test_accepted_partition_specs_make_keys(tmp_path: Path) -> None:
    from mlplatform.defs.partitions import cutoff_partitions, data_partitions

    for partitions, window in [
        ({"granularity": "daily", "start": "1000-01-01", "end": "1000-02-01"}, 30),
        ({"granularity": "monthly", "start": "2990-01-01", "end": "2999-12-01"}, 12),
        ({"granularity": "weekly", "start": "2024-01-03", "week_starts_on": "wednesday"}, 2),
    ]:
        d = example_dict()
        d["partitions"], d["training"]["window"] = partitions, window
        spec = load_spec(write(tmp_path, d))
        data_partitions(spec).get_partition_keys()
        cutoff_partitions(spec).get_partition_keys()


def test_category_limits(tmp_path: Path) -> None:
    d = example_dict()
    d["quality"]["max_categories"] = 3
    d["columns"]["region"]["max_categories"] = 4
    found = dict(problems(tmp_path, d))
    assert found["columns.payment_method.values"] == (
        "4 values, above the category limit 3; raise columns.payment_method.max_categories "
        "(or quality.max_categories)"
    )
    assert "columns.region.values" not in found
    d = example_dict()
    d["columns"]["tenure_months"]["max_categories"] = 10
    assert dict(problems(tmp_path, d))["columns.tenure_months"] == (
        "'max_categories' applies to category columns, not float"
    )
