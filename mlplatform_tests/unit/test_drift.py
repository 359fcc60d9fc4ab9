"""Drift statistics: PSI and category-share change, and the per-feature report."""

from __future__ import annotations

import datetime as dt
import sys
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlplatform.columns import MISSING_CATEGORY
from mlplatform.defs.versions import code_version
from mlplatform.spec import Drift, Partitions, ProjectSpec
from mlplatform.steps.drift import (
    feature_drift,
    key_features,
    missing_changes,
    psi,
    share_change,
)


def test_psi_is_zero_for_same_distribution_and_grows_with_shift() -> None:
    rng = np.random.default_rng(0)
    ref = rng.normal(0, 1, 5000)
    assert psi(ref, rng.normal(0, 1, 5000)) < 0.02
    small, large = psi(ref, rng.normal(0.3, 1, 5000)), psi(ref, rng.normal(1.5, 1, 5000))
    assert 0.05 < small < large and large > 0.5


def test_psi_counts_missing_values_as_their_own_bin() -> None:
    ref = np.arange(1000, dtype=float)
    cur = ref.copy()
    cur[:400] = np.nan
    assert psi(ref, cur) > 0.25


def test_share_change_names_the_category() -> None:
    ref = pd.Series(["a"] * 80 + ["b"] * 20)
    cur = pd.Series(["a"] * 50 + ["b"] * 50)
    value, top = share_change(ref, cur)
    assert abs(value - 0.30) < 1e-9 and top in ("a", "b")
    assert share_change(ref, ref)[0] == 0.0


def test_feature_drift_flags_only_shifted_features(churn_spec: ProjectSpec) -> None:
    rng = np.random.default_rng(1)
    n = 2000

    def frame(charge_mean: float, paypal: float) -> pd.DataFrame:
        data: dict[str, object] = {}
        for name in (
            "signup_date_year",
            "signup_date_month",
            "signup_date_dayofweek",
            "tenure_months",
            "support_calls",
            "autopay",
        ):
            data[name] = rng.integers(0, 10, n).astype(np.float32)
        data["monthly_charges"] = rng.normal(charge_mean, 10, n).astype(np.float32)
        data["plan"] = rng.choice(["basic", "standard", "premium"], n)
        data["region"] = rng.choice(["north", "south"], n)
        data["payment_method"] = np.where(rng.random(n) < paypal, "paypal", "card")
        return pd.DataFrame(data)

    found = {d.feature: d for d in feature_drift(frame(50, 0.1), frame(80, 0.5), churn_spec)}
    assert found["monthly_charges"].drifted and found["payment_method"].drifted
    assert not found["tenure_months"].drifted and not found["plan"].drifted
    lenient = Drift(psi_threshold=1000, share_threshold=1.0)
    assert not any(
        d.drifted for d in feature_drift(frame(50, 0.1), frame(80, 0.5), churn_spec, lenient)
    )


def churn_features(n: int, seed: int, signup: np.ndarray | None = None) -> pd.DataFrame:
    """Feature rows of the churn spec with stable distributions (signup dates: ``signup``)."""
    rng = np.random.default_rng(seed)
    days = (
        signup
        if signup is not None
        else np.datetime64("2020-01-01") + rng.integers(0, 1500, n).astype("timedelta64[D]")
    )
    months = days.astype("datetime64[M]")
    years = days.astype("datetime64[Y]")
    return pd.DataFrame(
        {
            "signup_date_year": (years.astype(np.int64) + 1970).astype(np.float32),
            "signup_date_month": (months.astype(np.int64) % 12 + 1).astype(np.float32),
            "signup_date_dayofweek": ((days.astype(np.int64) + 3) % 7).astype(np.float32),
            "tenure_months": rng.integers(0, 60, n).astype(np.float32),
            "monthly_charges": rng.normal(60, 10, n).astype(np.float32),
            "support_calls": rng.integers(0, 5, n).astype(np.float32),
            "plan": rng.choice(["basic", "premium"], n).astype(object),
            "region": rng.choice(["north", "south"], n).astype(object),
            "payment_method": rng.choice(["card", "paypal"], n).astype(object),
            "autopay": rng.integers(0, 2, n).astype(np.float32),
        }
    )


def in_period(start: str, days: int, n: int, seed: int) -> np.ndarray:
    """``n`` dates spread over the ``days`` days from ``start``."""
    offsets = np.random.default_rng(seed).integers(0, days, n).astype("timedelta64[D]")
    return np.datetime64(start) + offsets


def test_missing_share_jump_is_reported_per_column(churn_spec: ProjectSpec) -> None:
    reference, current = churn_features(2000, 1), churn_features(500, 2)
    reference.loc[:39, "monthly_charges"] = np.nan  # 2% in the window
    current.loc[:99, "monthly_charges"] = np.nan  # 20% now
    current.loc[:99, "region"] = MISSING_CATEGORY
    found = {d.feature: d for d in missing_changes(reference, current, churn_spec)}
    assert list(found) == churn_spec.feature_columns  # a date column once, by its own name
    charges = found["monthly_charges"]
    assert charges.drifted and charges.kind == "missing"
    assert charges.value == pytest.approx(0.18)
    assert charges.detail == "missing share 2.0% -> 20.0%"
    assert found["region"].drifted
    assert [c for c, d in found.items() if d.drifted] == ["monthly_charges", "region"]
    lenient = churn_spec.drift.model_copy(update={"missing_threshold": 0.5})
    assert not any(d.drifted for d in missing_changes(reference, current, churn_spec, lenient))


def test_no_drift_on_date_parts_of_the_partition_key_in_monthly_partitions(
    churn_spec: ProjectSpec,
) -> None:
    # signup_date dates the rows here: the window holds 12 months, the partition one.
    reference = churn_features(1200, 1, in_period("2023-03-01", 365, 1200, 1))
    current = churn_features(300, 2, in_period("2024-03-01", 31, 300, 2))
    current["monthly_charges"] += 30  # a real shift
    period = (dt.date(2024, 3, 1), dt.date(2024, 4, 1))
    skip = key_features(current, churn_spec, period)
    assert skip == ["signup_date_year", "signup_date_month"]
    found = {d.feature: d for d in feature_drift(reference, current, churn_spec, skip=skip)}
    assert "signup_date_month" not in found and "signup_date_year" not in found
    assert not found["signup_date_dayofweek"].drifted  # finer than a month: still compared
    assert found["monthly_charges"].drifted  # the real shift still fires
    unskipped = {d.feature: d for d in feature_drift(reference, current, churn_spec)}
    assert unskipped["signup_date_month"].drifted  # what the check used to report


def test_date_parts_of_other_date_columns_are_still_compared(churn_spec: ProjectSpec) -> None:
    current = churn_features(300, 2)  # signup dates over four years: not the partition's date
    assert key_features(current, churn_spec, (dt.date(2024, 3, 1), dt.date(2024, 4, 1))) == []


def test_key_parts_follow_the_granularity(churn_spec: ProjectSpec) -> None:
    weekly = churn_spec.model_copy(
        update={"partitions": Partitions(granularity="weekly", start=dt.date(2024, 1, 7))}
    )
    week = churn_features(300, 3, in_period("2024-03-31", 7, 300, 3))  # Sunday 31 March
    assert set(week["signup_date_month"]) == {3.0, 4.0}  # a week across two months
    period = (dt.date(2024, 3, 31), dt.date(2024, 4, 7))
    assert key_features(week, weekly, period) == ["signup_date_year", "signup_date_month"]
    daily = churn_spec.model_copy(
        update={"partitions": Partitions(granularity="daily", start=dt.date(2024, 1, 1))}
    )
    day = churn_features(50, 4, in_period("2024-04-03", 1, 50, 4))
    period = (dt.date(2024, 4, 3), dt.date(2024, 4, 4))
    assert key_features(day, daily, period) == [
        "signup_date_year",
        "signup_date_month",
        "signup_date_dayofweek",
    ]


def test_code_version_follows_module_source_and_spec_section(churn_spec: ProjectSpec) -> None:
    base = code_version(churn_spec, [types], ["features"])
    assert base == code_version(churn_spec, [types], ["features"])
    assert base != code_version(churn_spec, [np], ["features"])
    changed = churn_spec.model_copy(
        update={"features": churn_spec.features.model_copy(update={"out_of_range": "missing"})}
    )
    assert base != code_version(changed, [types], ["features"])
    assert code_version(churn_spec, [types], ["training"]) == code_version(
        changed, [types], ["training"]
    )


def test_code_version_reads_a_module_by_name_without_importing_it(
    churn_spec: ProjectSpec,
) -> None:
    import subprocess
    import sys

    from mlplatform.steps import split

    by_name = code_version(churn_spec, ["mlplatform.steps.split"], ["training"])
    assert by_name == code_version(churn_spec, [split], ["training"])
    probe = (
        "import sys; from mlplatform.defs.build import build_defs; "
        "from mlplatform.settings import load_settings; build_defs(load_settings()); "
        "print(sorted(m for m in ('torch', 'skops.io') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_code_version_of_a_package_follows_its_modules_and_templates(
    churn_spec: ProjectSpec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "reportish"
    (package / "templates").mkdir(parents=True)
    (package / "__init__.py").write_text("from reportish.render import render\n")
    (package / "render.py").write_text("def render() -> str:\n    return 'x'\n")
    template = package / "templates" / "page.html.j2"
    template.write_text("<h1>{{ title }}</h1>\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    base = code_version(churn_spec, ["reportish"], ["evaluation"])
    template.write_text("<h2>{{ title }}</h2>\n")
    edited_template = code_version(churn_spec, ["reportish"], ["evaluation"])
    (package / "render.py").write_text("def render() -> str:\n    return 'y'\n")
    edited_module = code_version(churn_spec, ["reportish"], ["evaluation"])
    assert len({base, edited_template, edited_module}) == 3
    assert "reportish" not in sys.modules  # read, not imported
