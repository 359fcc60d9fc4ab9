"""Numbers and bounds as the report shows them: 4 decimals, grouped counts, '—' when missing."""

from __future__ import annotations

import math
from collections.abc import Iterable

from mlplatform.spec import LOWER_IS_BETTER
from mlplatform.steps.gates import GateResult

DASH = "—"


def number(value: object) -> float | None:
    """A finite float, or None for None / NaN / inf / non-numbers."""
    if value is None or isinstance(value, bool):
        return None
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def fmt(value: object) -> str:
    """Metric value as text: 4 decimals, '—' when missing or not finite."""
    v = number(value)
    if v is None:
        return DASH
    if v != 0 and (abs(v) >= 1e6 or abs(v) < 1e-3):
        return f"{v:.4g}"
    return f"{v:.4f}"


def fmt_int(value: object) -> str:
    """Row counts as grouped integers, '—' when missing."""
    v = number(value)
    return DASH if v is None else f"{round(v):,}"


def items(value: object) -> Iterable[object]:
    """A JSON array's items; none for a missing (falsy) value."""
    if not value:
        return ()
    if not isinstance(value, Iterable):
        raise TypeError(f"{type(value).__name__!r} object is not iterable")
    return value


def direction(metric: str) -> str:
    return "lower is better" if metric in LOWER_IS_BETTER else "higher is better"


def bound(lo: float | None, hi: float | None) -> str:
    if lo is not None and hi is not None:
        return f"[{fmt(lo)}, {fmt(hi)}]"
    if lo is not None:
        return f"≥ {fmt(lo)}"
    if hi is not None:
        return f"≤ {fmt(hi)}"
    return DASH


def gate_bound(g: GateResult) -> str:
    """Absolute bounds and, for a relative gate, the lift needed over the best baseline."""
    parts = [bound(g.min, g.max)] if g.min is not None or g.max is not None else []
    if g.min_lift is not None or g.beat_baseline:
        need = f"lift ≥ {fmt(g.min_lift)}" if g.min_lift is not None else ""
        need += (" and " if need else "") + "lift > 0" if g.beat_baseline else ""
        if g.baseline is None:
            parts.append(f"{need} (no baseline)")
        else:
            parts.append(f"{need} over {g.baseline} ({fmt(g.baseline_value)}): lift {fmt(g.lift)}")
    return "; ".join(parts) or DASH
