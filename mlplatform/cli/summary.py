"""The per-cutoff summary printed after training: winner, comparisons, gates, bundle."""

from __future__ import annotations

from mlplatform.spec import ProjectSpec


def _fmt(value: object) -> str:
    return f"{value:.4f}" if isinstance(value, int | float) else "-"


def summary_lines(
    spec: ProjectSpec, cutoff: str, evaluation: dict, bundle: str | None
) -> list[str]:
    """The summary of one cutoff's evaluation JSON, read defensively (fields may be absent):
    models named ``baseline...`` are reference predictors, ``production`` the current one."""
    result = evaluation.get("result", evaluation)
    metric = result.get("primary_metric") or spec.evaluation.primary_metric
    models = result.get("models") or {}
    winner = result.get("winner")

    def value(name: str) -> object:
        return ((models.get(name) or {}).get("metrics") or {}).get(metric)

    compare = []
    production = result.get("production")
    if "production" in models:
        compare.append(f"production {_fmt(value('production'))}")
    elif isinstance(production, dict) and production.get("note"):
        compare.append(f"production: {production['note']}")
    elif isinstance(production, str) and production:
        compare.append(f"production: {production}")
    baselines = [n for n in models if n.startswith("baseline")]
    compare += [f"{name} {_fmt(value(name))}" for name in baselines]
    versus = f" (vs {', '.join(compare)})" if compare else ""
    if winner:
        lines = [f"  cutoff {cutoff}: winner {winner}, {metric} {_fmt(value(winner))}{versus}"]
        gated = [winner]
    else:
        lines = [f"  cutoff {cutoff}: no winner{versus}"]
        gated = [n for n in models if n != "production" and n not in baselines]
    for name in gated:
        for gate in (models.get(name) or {}).get("gates") or []:
            lines.append(f"    gate {name}: {_gate(gate)}")
    for reason in result.get("reasons") or []:
        lines.append(f"    reason: {reason}")
    lines.append(f"    bundle: {bundle or '-'}")
    return lines


def _gate(gate: dict) -> str:
    """'roc_auc 0.8123 (min 0.55) passed'; a relative gate with its baseline and lift."""
    rule = [f"{k} {gate[k]}" for k in ("min", "max", "min_lift") if gate.get(k) is not None]
    rule += ["beat_baseline"] * bool(gate.get("beat_baseline"))
    text = f"{gate.get('metric')} {_fmt(gate.get('value'))} ({', '.join(rule) or 'no bound'})"
    if gate.get("baseline"):
        text += f" vs {gate['baseline']} {_fmt(gate.get('baseline_value'))}"
        if gate.get("lift") is not None:
            text += f", lift {gate['lift']:+.4f}"
    return f"{text} {'passed' if gate.get('passed') else 'FAILED'}"
