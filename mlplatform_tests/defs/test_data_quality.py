"""Data-quality checks in a materialized graph: missingness blocks and keeps what is stored;
partial periods and drift warn without blocking."""

from __future__ import annotations

import datetime as dt
from typing import Any

import dagster as dg
import numpy as np

from mlplatform.defs.build import build_defs, data_job_name
from mlplatform.examples.generate import generate_frame
from mlplatform_tests.defs.test_materialize import materialized, run, tree_digest
from mlplatform_tests.projects import Project, ProjectFactory, variant


def evaluations(result: dg.ExecuteInProcessResult) -> dict[str, Any]:
    """Check name -> its evaluation in a run."""
    return {
        e.event_specific_data.check_name: e.event_specific_data
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
    }


def features_check_specs(project: Project) -> list[dg.AssetCheckSpec]:
    """The check specs on a project's ``features`` asset, as its definitions declare them."""
    defs = build_defs(project.settings, [project.spec])
    graph = defs.resolve_asset_graph()
    key = dg.AssetKey([project.spec.name, "features"])
    return [graph.get_check_spec(k) for k in graph.asset_check_keys if k.asset_key == key]


def test_too_many_missing_values_block_raw_and_keep_the_stored_partition(
    make_project: ProjectFactory, instance: dg.DagsterInstance
) -> None:
    project = make_project("binary", months=1, rows=100)
    p, month = project.spec.name, project.files[0]
    assert run(project, data_job_name(p), month.stem, instance).success
    stored = tree_digest(project.home / "assets")

    lines = month.read_text().splitlines()
    at = lines[0].split(",").index("monthly_charges")
    for i in range(1, 21):  # 20% of the rows
        cells = lines[i].split(",")
        cells[at] = "n/a"
        lines[i] = ",".join(cells)
    month.write_text("\n".join(lines) + "\n")
    result = run(project, data_job_name(p), month.stem, instance)
    assert not result.success and materialized(result) == set()
    schema = evaluations(result)["schema"]
    assert not schema.passed
    assert "column 'monthly_charges'" in schema.description
    assert f"missing in {month.name}" in schema.description
    assert tree_digest(project.home / "assets") == stored


def test_partial_week_and_missing_jump_warn_without_blocking(
    make_project: ProjectFactory, instance: dg.DagsterInstance
) -> None:
    columns = variant("binary", "weekly")["columns"]
    columns["monthly_charges"]["max_missing_fraction"] = 0.5
    project = make_project(
        "binary",
        months=0,
        name="weekly",
        partitions={"granularity": "weekly", "start": "2024-01-07"},
        columns=columns,
    )
    p = project.spec.name
    landing = project.spec.landing_dir(project.home)
    landing.mkdir(parents=True, exist_ok=True)
    weeks = [dt.date(2024, 1, 7) + dt.timedelta(weeks=i) for i in range(4)]
    for i, week in enumerate(weeks):
        rows = 60 if week == weeks[-1] else 200  # the last one: three days of a week
        frame = generate_frame(week, rows, np.random.default_rng([3, i]), 0, 1)
        if week == weeks[-1]:
            frame.loc[: rows // 3, "monthly_charges"] = ""
        frame.to_csv(landing / f"{week.isoformat()}.csv", index=False)

    results = [run(project, data_job_name(p), w.isoformat(), instance) for w in weeks]
    assert all(r.success for r in results)
    full = evaluations(results[2])
    assert full["partial_period"].passed

    last = evaluations(results[-1])
    partial = last["partial_period"]
    assert not partial.passed and partial.severity == dg.AssetCheckSeverity.WARN
    assert partial.description.startswith("60 rows, 30% of the median 200")
    drift = last["drift"]
    assert not drift.passed and drift.severity == dg.AssetCheckSeverity.WARN
    assert "monthly_charges: missing share" in drift.description
    assert f"{p}/features" in materialized(results[-1])
    specs = {s.name: s for s in features_check_specs(project)}
    assert not specs["drift"].blocking and not specs["partial_period"].blocking
