"""The spec's metric gates applied to one model's holdout metrics, and direction-aware
comparison of metric values (lower is better for losses and errors)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from mlplatform.spec import LOWER_IS_BETTER, ProjectSpec

# A holdout primary metric this good is implausible on real data (a leak, a target copy):
# at least these for higher-is-better metrics, at most these for lower-is-better ones.
PERFECT_AT_LEAST = {
    "roc_auc": 0.999,
    "pr_auc": 0.999,
    "accuracy": 0.999,
    "balanced_accuracy": 0.999,
    "f1": 0.999,
    "r2": 0.999,
}
PERFECT_AT_MOST = {"log_loss": 0.001, "rmse": 0.0, "mae": 0.0}


@dataclass
class GateResult:
    """One gate applied to one model; relative gates name the best baseline and the lift."""

    metric: str
    value: float
    min: float | None
    max: float | None
    passed: bool
    min_lift: float | None = None
    beat_baseline: bool = False
    baseline: str | None = None
    baseline_value: float | None = None
    lift: float | None = None

    def why(self) -> str:
        """Why the gate failed (or what it checked), as one line."""
        parts = []
        inside = math.isfinite(self.value)
        inside = inside and (self.min is None or self.value >= self.min)
        inside = inside and (self.max is None or self.value <= self.max)
        if (self.min is not None or self.max is not None) and not inside:
            parts.append(f"{self.metric}={self.value:.4f} outside [{self.min}, {self.max}]")
        if self.min_lift is not None or self.beat_baseline:
            if self.baseline is None:
                parts.append(f"{self.metric}: no baseline score to compare with")
            elif self.lift is None or self.baseline_value is None:
                parts.append(f"{self.metric} is undefined on this holdout")
            else:
                need = [f"min_lift={self.min_lift}"] * (self.min_lift is not None)
                need += ["beat_baseline"] * self.beat_baseline
                parts.append(
                    f"{self.metric}={self.value:.4f} vs {self.baseline}="
                    f"{self.baseline_value:.4f}: lift {self.lift:+.4f} ({', '.join(need)})"
                )
        return "; ".join(parts)


def best_baseline(
    baselines: Mapping[str, Mapping[str, float]], metric: str
) -> tuple[str, float] | None:
    """The baseline with the best finite value of ``metric`` (and that value)."""
    best: tuple[str, float] | None = None
    for name, metrics in baselines.items():
        value = metrics.get(metric, float("nan"))
        if math.isfinite(value) and (best is None or better(value, best[1], metric)):
            best = (name, value)
    return best


def lift(value: float, reference: float, metric: str) -> float:
    """How much better ``value`` is than ``reference`` (positive = better), direction-aware."""
    return reference - value if metric in LOWER_IS_BETTER else value - reference


def gate_results(
    metrics: Mapping[str, float],
    spec: ProjectSpec,
    baselines: Mapping[str, Mapping[str, float]] | None = None,
) -> list[GateResult]:
    """Each of the spec's gates applied to one model's metrics (NaN fails); ``min_lift`` and
    ``beat_baseline`` compare with the best of ``baselines`` on the gate's metric, and fail
    when there is no baseline score."""
    results = []
    for gate in spec.evaluation.gates:
        value = metrics.get(gate.metric, float("nan"))
        ok = math.isfinite(value)
        ok = ok and (gate.min is None or value >= gate.min)
        ok = ok and (gate.max is None or value <= gate.max)
        result = GateResult(
            gate.metric, value, gate.min, gate.max, ok, gate.min_lift, gate.beat_baseline
        )
        if gate.min_lift is not None or gate.beat_baseline:
            best = best_baseline(baselines or {}, gate.metric)
            if best is None:
                result.passed = False
            else:
                result.baseline, result.baseline_value = best
                result.lift = lift(value, best[1], gate.metric) if math.isfinite(value) else None
                gained = result.lift if result.lift is not None else float("nan")
                result.passed = result.passed and math.isfinite(gained)
                result.passed = result.passed and (gate.min_lift is None or gained >= gate.min_lift)
                result.passed = result.passed and (not gate.beat_baseline or gained > 0)
        results.append(result)
    return results


def implausibly_perfect(metrics: Mapping[str, float], spec: ProjectSpec) -> str | None:
    """Why a holdout score is too good to be true, or None: the primary metric at or beyond
    PERFECT_AT_LEAST / PERFECT_AT_MOST, or (regression) an r2 at or above its threshold."""
    names = [spec.evaluation.primary_metric] + ["r2"] * (spec.task == "regression")
    for metric in dict.fromkeys(names):
        value = metrics.get(metric, float("nan"))
        if not math.isfinite(value):
            continue
        if metric in PERFECT_AT_LEAST and value >= PERFECT_AT_LEAST[metric]:
            bound = f">= {PERFECT_AT_LEAST[metric]}"
        elif metric in PERFECT_AT_MOST and value <= PERFECT_AT_MOST[metric]:
            bound = f"<= {PERFECT_AT_MOST[metric]}"
        else:
            continue
        return (
            f"implausibly perfect: holdout {metric}={value:.4f} ({bound}); look for a leak "
            "(a feature that encodes the target)"
        )
    return None


def better(a: float, b: float, metric: str) -> bool:
    """Is metric value a strictly better than b?"""
    return a < b if metric in LOWER_IS_BETTER else a > b


def regression_vs(candidate: float, production: float, metric: str) -> float:
    """How much worse candidate is than production (positive = worse)."""
    return candidate - production if metric in LOWER_IS_BETTER else production - candidate
