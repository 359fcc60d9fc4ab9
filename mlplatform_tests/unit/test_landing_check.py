"""``validate --data``: landing files' first rows checked like the raw asset, file/line/column."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from mlplatform.cli import app
from mlplatform.examples.generate import generate_example
from mlplatform.spec import ProjectSpec, load_spec
from mlplatform.steps.ingest import parse_partition, read_landing_file
from mlplatform.steps.preview import check_file
from mlplatform_tests.projects import variant


def project(tmp_path: Path, months: int = 2, rows: int = 120, **columns: Any) -> ProjectSpec:
    d = variant("binary", "proj")
    d["data"]["landing"] = str(tmp_path / "landing")
    d["quality"]["min_rows"] = 10
    d["columns"].update(columns)
    path = tmp_path / "proj.yaml"
    path.write_text(yaml.safe_dump(d), encoding="utf-8")
    spec = load_spec(path)
    generate_example(tmp_path / "landing", months=months, rows_per_month=rows, seed=3)
    return spec


def validate_data(tmp_path: Path, *args: str) -> Any:
    return CliRunner().invoke(
        app, ["validate", "--data", *args, "--home", str(tmp_path), str(tmp_path / "proj.yaml")]
    )


def test_clean_landing_files_pass(tmp_path: Path) -> None:
    project(tmp_path)
    result = validate_data(tmp_path)
    assert result.exit_code == 0, result.output
    assert "proj: 2 landing file(s), first 1000 rows each: ok" in result.output


def test_wrong_date_format_names_file_line_and_column(tmp_path: Path) -> None:
    project(tmp_path, signup_date={"type": "date", "format": "%Y-%m-%d"})  # files: %d/%m/%Y
    first = tmp_path / "landing" / "2023-01-01.csv"
    line2 = first.read_text().splitlines()[1].split(",")[1]
    result = validate_data(tmp_path, "--rows", "50")
    assert result.exit_code == 1
    assert (
        f"{first}: [schema] column 'signup_date': 50 of 50 values (100.0%) not a %Y-%m-%d date, "
        f"above quality.max_invalid_fraction=0.02; line 2 {line2!r}"
    ) in result.output
    assert "2 problem(s)" in result.output


def test_columns_numbers_categories_and_stray_files(tmp_path: Path) -> None:
    project(tmp_path, plan={"type": "category", "values": ["gold", "silver"]})
    landing = tmp_path / "landing"
    first = landing / "2023-01-01.csv"
    lines = first.read_text().splitlines()
    header = lines[0].replace("support_calls", "calls")  # one column missing, one extra
    first.write_text("\n".join([header, *lines[1:]]) + "\n")
    second = landing / "2023-02-01.csv"
    rows = [line.split(",") for line in second.read_text().splitlines()]
    for row in rows[1:]:
        row[2] = "twelve"  # tenure_months
    second.write_text("\n".join(",".join(r) for r in rows) + "\n")
    (landing / "2023-02-15.csv").write_text(lines[0] + "\n")
    out = validate_data(tmp_path).output
    assert f"{first}: header: missing column(s) support_calls" in out
    assert f"{first}: header: unexpected column(s) calls" in out
    assert (
        f"{second}: [schema] column 'tenure_months': 120 of 120 values (100.0%) not a number" in out
    )
    assert f"{second}: [ranges] column 'plan': " in out and "not one of gold, silver" in out
    assert "line 2 'twelve'" in out
    assert (
        f"{landing / '2023-02-15.csv'}: file name matches no partition key; "
        "expected names like '2023-01-01.csv'" in out
    )


@pytest.fixture
def many_levels(tmp_path: Path) -> ProjectSpec:
    """customer_id (4,000 distinct values) declared as a category."""
    return project(tmp_path, months=1, rows=4000, customer_id={"type": "category"})


def test_a_4000_level_category_is_refused_by_validate_and_the_raw_check(
    tmp_path: Path, many_levels: ProjectSpec
) -> None:
    advice = (
        "above the category limit 200 (columns.customer_id.max_categories, default "
        "quality.max_categories); declare it `type: id` if it identifies rows, or raise the limit"
    )
    result = validate_data(tmp_path)
    assert result.exit_code == 1
    assert f"[ranges] column 'customer_id': 1000 distinct values, {advice}" in result.output
    path = tmp_path / "landing" / "2023-01-01.csv"
    _, report = parse_partition(read_landing_file(path, many_levels), many_levels, path)
    assert report.problems["ranges"] == [f"column 'customer_id': 4000 distinct values, {advice}"]


def test_a_raised_column_limit_accepts_the_levels(tmp_path: Path, many_levels: ProjectSpec) -> None:
    spec = many_levels.model_copy(
        update={
            "columns": {
                **many_levels.columns,
                "customer_id": many_levels.columns["customer_id"].model_copy(
                    update={"max_categories": 5000}
                ),
            }
        }
    )
    path = tmp_path / "landing" / "2023-01-01.csv"
    assert check_file(path, spec).problems == []
    _, report = parse_partition(read_landing_file(path, spec), spec, path)
    assert report.problems["ranges"] == []
