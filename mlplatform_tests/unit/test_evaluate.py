"""evaluate.evaluate on small hand-made holdouts: baselines of every task, relative gates,
implausibly perfect candidates, too-small holdouts, production that is not comparable."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from mlplatform.spec import Gate, ProjectSpec
from mlplatform.steps import baselines as bl
from mlplatform.steps import evaluate as ev
from mlplatform.steps.report import render_report
from mlplatform_tests.projects import variant

RNG = np.random.default_rng(3)


def spec_of(task: str, **evaluation: Any) -> ProjectSpec:
    d = variant(task, f"t_{task}")
    d["evaluation"] = {**d["evaluation"], "min_holdout_rows": 1, **evaluation}
    return ProjectSpec.model_validate(d)


def classifier(classes: list[str], proba: np.ndarray) -> ev.Predictor:
    return lambda frame: ev.Prediction(classes=classes, proba=proba)


def regressor(values: np.ndarray) -> ev.Predictor:
    return lambda frame: ev.Prediction(values=values)


def noisy_proba(y: np.ndarray, classes: list[str], skill: float) -> np.ndarray:
    """Probabilities that lean towards the true class by ``skill`` (0: random)."""
    onehot = (y[:, None] == np.asarray(classes)[None, :]).astype(float)
    noise = RNG.random((len(y), len(classes)))
    p = skill * onehot + (1 - skill) * noise
    return p / p.sum(axis=1, keepdims=True)


# -- baselines ---------------------------------------------------------------------------


def test_binary_evaluation_scores_the_training_window_class_prior() -> None:
    spec = spec_of("binary", gates=[])
    window = {"2024-01-01": np.array(["no"] * 70 + ["yes"] * 30)}
    y = np.array(["no"] * 60 + ["yes"] * 40)
    holdout = pd.DataFrame({"churned": y})
    weak = classifier(["no", "yes"], noisy_proba(y, ["no", "yes"], 0.0))
    baselines = bl.baseline_predictors(spec, window)
    result = ev.evaluate(holdout, {"weak": weak}, spec, "2024-02-01", baselines)

    prior = result.models[bl.PRIOR]
    assert prior.kind == ev.BASELINE and prior.gates == []
    assert prior.metrics["accuracy"] == pytest.approx(0.6)  # always the window's majority "no"
    assert prior.metrics["roc_auc"] == pytest.approx(0.5)
    assert prior.metrics["log_loss"] == pytest.approx(-(0.6 * np.log(0.7) + 0.4 * np.log(0.3)))
    # The prior beats the random candidate on accuracy, yet only a candidate can win.
    assert result.models["weak"].metrics["accuracy"] < prior.metrics["accuracy"]
    assert result.winner == "weak"
    assert result.to_json()["models"][bl.PRIOR]["kind"] == "baseline"  # type: ignore[index]


def test_multiclass_prior_covers_a_holdout_label_unseen_in_the_window() -> None:
    spec = spec_of("multiclass", gates=[])
    window = {"2024-01-01": np.array(["budget"] * 5), "2024-02-01": np.array(["mainstream"] * 15)}
    y = np.array(["budget", "mainstream", "premium", "mainstream"] * 10)
    classes = ["budget", "mainstream", "premium"]
    good = classifier(classes, noisy_proba(y, classes, 0.8))
    result = ev.evaluate(
        pd.DataFrame({"segment": y}),
        {"good": good},
        spec,
        "2024-03-01",
        bl.baseline_predictors(spec, window),
    )
    prior = result.models[bl.PRIOR]
    assert prior.confusion is not None and prior.confusion["labels"] == classes
    assert prior.metrics["accuracy"] == pytest.approx(0.5)  # always "mainstream"
    assert np.isfinite(prior.metrics["log_loss"])
    assert result.winner == "good"


def test_regression_baselines_mean_last_period_and_seasonal_naive() -> None:
    spec = spec_of("regression", gates=[], season=2)
    window = {
        "2024-01-01": np.array([10.0, 12.0]),
        "2024-02-01": np.array([20.0, 20.0, 20.0]),
        "2024-03-01": np.array([30.0, 34.0]),
    }
    y = np.array([20.0, 24.0, 28.0, 28.0])
    baselines = bl.baseline_predictors(spec, window, seasonal=np.array([25.0, 25.0]))
    result = ev.evaluate(
        pd.DataFrame({"lifetime_value": y}),
        {"model": regressor(y + 1.0)},
        spec,
        "2024-04-01",
        baselines,
    )
    expected = {bl.MEAN: 146.0 / 7, bl.LAST: 32.0, bl.SEASONAL: 25.0}
    assert set(expected) <= set(result.models)
    for name, constant in expected.items():
        rmse = float(np.sqrt(np.mean((y - constant) ** 2)))
        assert result.models[name].metrics["rmse"] == pytest.approx(rmse), name
        assert result.models[name].kind == ev.BASELINE
    assert result.winner == "model"
    assert bl.SEASONAL not in bl.baseline_predictors(spec, window)  # season not stored


# -- relative gates ----------------------------------------------------------------------


def test_a_gate_needs_a_bound_or_a_baseline_comparison() -> None:
    with pytest.raises(ValidationError, match="min_lift"):
        Gate(metric="f1")
    assert Gate(metric="rmse", beat_baseline=True).beat_baseline
    assert Gate(metric="f1", min_lift=0.1).min_lift == 0.1


def _regression_with(gates: list[dict[str, Any]], model_rmse_shift: float) -> ev.EvaluationResult:
    spec = spec_of("regression", gates=gates)
    y = np.array([10.0, 20.0, 30.0, 40.0] * 10)
    window = {"2024-01-01": y}  # mean 25: rmse of the mean baseline is sqrt(125) ~ 11.18
    return ev.evaluate(
        pd.DataFrame({"lifetime_value": y}),
        {"model": regressor(y + model_rmse_shift)},
        spec,
        "2024-02-01",
        bl.baseline_predictors(spec, window),
    )


def test_beat_baseline_is_direction_aware_for_lower_is_better_metrics() -> None:
    passes = _regression_with([{"metric": "rmse", "beat_baseline": True}], 5.0)  # rmse 5
    (gate,) = passes.models["model"].gates
    assert gate.passed and gate.baseline == bl.MEAN
    assert gate.lift == pytest.approx(np.sqrt(125) - 5.0)
    assert passes.winner == "model"

    fails = _regression_with([{"metric": "rmse", "beat_baseline": True}], 12.0)  # rmse 12
    (gate,) = fails.models["model"].gates
    assert not gate.passed and gate.lift is not None and gate.lift < 0
    assert fails.winner is None
    assert any("model: gate rmse=12.0000 vs baseline-mean" in r for r in fails.reasons)
    html = render_report(fails, project="t")
    assert "lift &gt; 0 over baseline-mean (11.1803): lift -0.8197" in html


def test_min_lift_over_the_best_baseline() -> None:
    y = np.array(["no"] * 50 + ["yes"] * 50)
    holdout = pd.DataFrame({"churned": y})
    window = {"2024-01-01": np.array(["no"] * 60 + ["yes"] * 40)}
    labels = np.where(np.arange(100) % 10 == 0, np.where(y == "no", "yes", "no"), y)
    proba = np.where((labels == "yes")[:, None], [0.3, 0.7], [0.7, 0.3])  # 90% accurate
    model = classifier(["no", "yes"], proba)
    for min_lift, passed in ((0.3, True), (0.5, False)):  # prior accuracy 0.5, model 0.9
        spec = spec_of("binary", gates=[{"metric": "accuracy", "min_lift": min_lift}])
        result = ev.evaluate(
            holdout, {"m": model}, spec, "2024-02-01", bl.baseline_predictors(spec, window)
        )
        (gate,) = result.models["m"].gates
        assert gate.lift == pytest.approx(0.4)
        assert gate.passed is passed
        assert (result.winner == "m") is passed


def test_a_relative_gate_without_a_baseline_fails_and_says_so() -> None:
    spec = spec_of("regression", gates=[{"metric": "mae", "min_lift": 0.0}])
    y = np.array([1.0, 2.0, 3.0] * 20)
    result = ev.evaluate(pd.DataFrame({"lifetime_value": y}), {"m": regressor(y)}, spec, "x")
    assert result.winner is None
    assert any("no baseline score to compare with" in r for r in result.reasons)


# -- implausibly perfect, too small, production not comparable ----------------------------


@pytest.mark.parametrize("allow", [False, True])
def test_an_implausibly_perfect_candidate_wins_only_with_the_opt_in(allow: bool) -> None:
    spec = spec_of("binary", gates=[], allow_perfect=allow)
    y = np.array(["no", "yes"] * 30)
    holdout = pd.DataFrame({"churned": y})
    perfect = classifier(["no", "yes"], noisy_proba(y, ["no", "yes"], 1.0))
    decent = classifier(["no", "yes"], noisy_proba(y, ["no", "yes"], 0.2))
    result = ev.evaluate(holdout, {"leaky": perfect, "decent": decent}, spec, "2024-02-01")
    assert result.models["leaky"].metrics["roc_auc"] == 1.0
    assert "implausibly perfect" in result.models["leaky"].notes[0]
    assert any(r.startswith("leaky: implausibly perfect: holdout roc_auc") for r in result.reasons)
    assert result.winner == ("leaky" if allow else "decent")
    assert result.models["decent"].notes == []
    assert render_report(result, project="t").count('class="tag flag"') >= 1


def test_a_perfect_regression_fit_is_flagged_by_r2() -> None:
    spec = spec_of("regression", gates=[])
    y = np.linspace(0, 100, 50)
    result = ev.evaluate(pd.DataFrame({"lifetime_value": y}), {"m": regressor(y)}, spec, "x")
    assert result.winner is None
    assert "implausibly perfect: holdout rmse=0.0000" in result.reasons[0]


def test_a_holdout_below_min_holdout_rows_decides_no_winner() -> None:
    spec = spec_of("regression", gates=[], min_holdout_rows=25)
    y = np.arange(24, dtype=float)
    result = ev.evaluate(pd.DataFrame({"lifetime_value": y}), {"m": regressor(y + 3)}, spec, "x")
    assert result.winner is None
    assert "holdout has 24 rows, fewer than evaluation.min_holdout_rows=25" in result.reasons[0]
    y = np.arange(25, dtype=float)
    result = ev.evaluate(pd.DataFrame({"lifetime_value": y}), {"m": regressor(y + 3)}, spec, "x")
    assert result.winner == "m"
    default = ProjectSpec.model_validate(variant("binary", "b")).evaluation.min_holdout_rows
    assert default == 30


def test_production_not_comparable_is_in_the_result_and_the_report() -> None:
    spec = spec_of("binary", gates=[{"metric": "roc_auc", "min": 0.55}])
    y = np.array(["no", "yes"] * 30)
    entry = ev.ProductionEntry(
        "abc123def4567890", False, "not comparable: production trained on this holdout"
    )
    model = classifier(["no", "yes"], noisy_proba(y, ["no", "yes"], 0.2))
    window = {"2024-01-01": np.array(["no", "no", "yes"])}
    result = ev.evaluate(
        pd.DataFrame({"churned": y}),
        {"m": model},
        spec,
        "2024-02-01",
        bl.baseline_predictors(spec, window),
        entry,
    )
    assert result.winner == "m"
    assert result.to_json()["production"] == {
        "bundle_id": "abc123def4567890",
        "comparable": False,
        "note": "not comparable: production trained on this holdout",
    }
    assert any("evaluation.max_regression does not apply" in r for r in result.reasons)
    html = render_report(result, project="t")
    assert "not comparable: production trained on this holdout" in html
    assert "abc123def456" in html
    assert 'id="best-baseline"' in html and "baseline-prior" in html
    assert '<span class="tag base">baseline</span>' in html
