"""Drift statistics: PSI and category-share change, and the per-feature report."""

from __future__ import annotations

import types

import numpy as np
import pandas as pd

from mlplatform.defs.versions import code_version
from mlplatform.spec import Drift, ProjectSpec
from mlplatform.steps.drift import feature_drift, psi, share_change


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
