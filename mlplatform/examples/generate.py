"""Seeded synthetic landing data for the example ``churn`` project (see ``churn.yaml``).

Each month is a snapshot of subscription customers with three targets (``churned`` for the
binary task, ``segment`` for multiclass, ``lifetime_value`` for regression), realistic dirt
(missing cells, a few out-of-range numbers, unknown categories, padded numbers) and a
distribution shift in the last third of the months. A month's random draws depend only on
``(seed, month_index)``; the drift applied to them depends on where the month lies in the
run (``month_index / n_months``).
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd

COLUMNS: tuple[str, ...] = (
    "customer_id",
    "signup_date",
    "tenure_months",
    "monthly_charges",
    "support_calls",
    "plan",
    "region",
    "payment_method",
    "autopay",
    "segment",
    "lifetime_value",
    "churned",
)
PLANS: tuple[str, ...] = ("basic", "standard", "premium")
REGIONS: tuple[str, ...] = ("north", "south", "east", "west")
PAYMENTS: tuple[str, ...] = ("card", "bank_transfer", "paypal", "invoice")
SEGMENTS: tuple[str, ...] = ("budget", "mainstream", "premium")

PLAN_P = np.array([0.45, 0.35, 0.20])
PLAN_CHARGE_MEAN = np.array([32.0, 64.0, 105.0])
PLAN_CHARGE_SD = np.array([6.0, 10.0, 16.0])
PLAN_LTV_FACTOR = np.array([0.9, 1.0, 1.25])
REGION_P = np.array([0.30, 0.25, 0.25, 0.20])
PAYMENT_P = np.array([0.45, 0.25, 0.15, 0.15])
AUTOPAY_P = np.array([0.70, 0.80, 0.50, 0.15])  # P(autopay) per payment method
MISSING_RATE = {
    "tenure_months": 0.025,
    "monthly_charges": 0.03,
    "payment_method": 0.02,
    "region": 0.035,
}
MAX_ROWS = 999_999  # customer ids of one frame are C000000..C999999
CHUNK_ROWS = 500_000  # larger months are drawn and written in chunks of this many rows
MAX_MONTH_ROWS = 50_000_000


def _drift(month_index: int, n_months: int) -> float:
    """Shift strength in [0, 1]: 0 in the first two thirds, rising to 1 at the last month."""
    if n_months <= 0:
        return 0.0
    third = n_months / 3.0
    return float(np.clip((month_index + 1 - 2.0 * third) / third, 0.0, 1.0))


def _month_start(start: dt.date, offset: int) -> dt.date:
    """The first day of the month ``offset`` months after ``start``'s month."""
    total = start.year * 12 + (start.month - 1) + offset
    return dt.date(total // 12, total % 12 + 1, 1)


def _fmt(fmt: str, values: np.ndarray) -> np.ndarray:
    """Format numbers as an object array of strings."""
    return np.array([fmt % v for v in values.tolist()], dtype=object)


def _dates(days: np.ndarray) -> np.ndarray:
    """Format day numbers (days since 1970-01-01) as '%d/%m/%Y' strings."""
    d = days.astype("datetime64[D]")
    years = d.astype("datetime64[Y]")
    months = d.astype("datetime64[M]")
    y = years.astype(np.int64) + 1970
    m = (months - years).astype(np.int64) + 1
    dd = (d - months).astype(np.int64) + 1
    parts = zip(dd.tolist(), m.tolist(), y.tolist(), strict=True)
    return np.array([f"{a:02d}/{b:02d}/{c:04d}" for a, b, c in parts], dtype=object)


def _charges(plan_i: np.ndarray, z: np.ndarray, tenure: np.ndarray, s: float) -> np.ndarray:
    """Monthly charges: by plan, rising with tenure and with the drift."""
    charges: np.ndarray = PLAN_CHARGE_MEAN[plan_i] + PLAN_CHARGE_SD[plan_i] * z
    charges = charges * (1.0 + 0.003 * np.minimum(tenure, 60)) * (1.0 + 0.15 * s)
    return np.round(np.clip(charges, 5.0, 450.0), 2)


def _payment(u_pay: np.ndarray, s: float) -> np.ndarray:
    """Payment method index; the drift moves customers towards the third method."""
    pay_p = PAYMENT_P + s * np.array([-0.12, -0.03, 0.15, 0.0])
    return np.searchsorted(np.cumsum(pay_p), u_pay, side="right").clip(0, 3)


def _signup_days(month: dt.date, tenure: np.ndarray, jitter: np.ndarray) -> np.ndarray:
    """Signup dates (days since the epoch): tenure months back from the snapshot month."""
    month_day = np.datetime64(month, "D").astype(np.int64)
    return month_day - np.round(tenure * 30.44).astype(np.int64) - jitter


def generate_frame(
    month: dt.date,
    rows: int,
    rng: np.random.Generator,
    month_index: int,
    n_months: int,
    id_offset: int = 0,
) -> pd.DataFrame:
    """One month's customer snapshot: string-valued columns in churn.yaml order ('' = missing);
    customer ids are ``id_offset`` plus up to MAX_ROWS."""
    if not 1 <= rows <= MAX_ROWS:
        raise ValueError(f"rows must be between 1 and {MAX_ROWS}, got {rows}")
    s = _drift(month_index, n_months)

    # All random draws first, in a fixed order, so the drift never changes the stream.
    ids = np.sort(rng.choice(MAX_ROWS + 1, size=rows, replace=False)) + id_offset
    u_new = rng.random(rows)
    tenure_new = rng.geometric(0.18, rows) - 1
    tenure_old = rng.gamma(2.0, 16.0, rows)
    signup_jitter = rng.integers(1, 29, rows)
    plan_i = rng.choice(3, size=rows, p=PLAN_P)
    z_charge = rng.standard_normal(rows)
    region_i = rng.choice(4, size=rows, p=REGION_P)
    u_pay = rng.random(rows)
    u_autopay = rng.random(rows)
    calls_lam_noise = rng.gamma(4.0, 0.25, rows)
    u_calls = rng.random(rows)
    u_churn = rng.random(rows)
    gumbel = rng.gumbel(size=(rows, 3))
    ltv_noise = rng.lognormal(0.0, 0.25, rows)
    u_missing = rng.random((rows, len(MISSING_RATE)))

    # Features.
    tenure = np.where(u_new < 0.3, tenure_new, np.floor(tenure_old)).astype(np.int64)
    tenure = np.clip(tenure, 0, 119)
    charges = _charges(plan_i, z_charge, tenure, s)
    pay_i = _payment(u_pay, s)
    autopay = u_autopay < AUTOPAY_P[pay_i]
    lam = calls_lam_noise * (1.0 + 0.6 * (plan_i == 0) + 1.5 * (tenure < 6))
    calls = np.minimum(_poisson_from_uniform(lam, u_calls), 30)
    signup_days = _signup_days(month, tenure, signup_jitter)
    logit = _churn_logit(tenure, charges, calls, plan_i, pay_i, autopay, s)
    churned = u_churn < 1.0 / (1.0 + np.exp(-logit))
    segment_i = _segment(tenure, charges, plan_i, gumbel)
    # Regression target: lifetime value.
    ltv = charges * (tenure + 12.0) * PLAN_LTV_FACTOR[plan_i] * ltv_noise
    ltv = np.round(np.maximum(ltv, 0.0), 2)

    frame = _string_columns(
        ids, signup_days, tenure, charges, calls, plan_i, region_i, pay_i, autopay, segment_i
    )
    frame["lifetime_value"] = _fmt("%.2f", ltv)
    frame["churned"] = np.where(churned, "yes", "no").astype(object)
    for j, (col, rate) in enumerate(MISSING_RATE.items()):
        frame[col][u_missing[:, j] < rate] = ""
    _add_dirt(frame, rng, tenure, charges, calls)
    return pd.DataFrame(frame, columns=list(COLUMNS))


def _string_columns(
    ids: np.ndarray,
    signup_days: np.ndarray,
    tenure: np.ndarray,
    charges: np.ndarray,
    calls: np.ndarray,
    plan_i: np.ndarray,
    region_i: np.ndarray,
    pay_i: np.ndarray,
    autopay: np.ndarray,
    segment_i: np.ndarray,
) -> dict[str, np.ndarray]:
    """The snapshot's columns up to the segment, as strings."""
    return {
        "customer_id": np.array([f"C{i:06d}" for i in ids.tolist()], dtype=object),
        "signup_date": _dates(signup_days),
        "tenure_months": _fmt("%d", tenure),
        "monthly_charges": _fmt("%.2f", charges),
        "support_calls": _fmt("%d", calls),
        "plan": np.array(PLANS, dtype=object)[plan_i],
        "region": np.array(REGIONS, dtype=object)[region_i],
        "payment_method": np.array(PAYMENTS, dtype=object)[pay_i],
        "autopay": np.where(autopay, "true", "false").astype(object),
        "segment": np.array(SEGMENTS, dtype=object)[segment_i],
    }


def _churn_logit(
    tenure: np.ndarray,
    charges: np.ndarray,
    calls: np.ndarray,
    plan_i: np.ndarray,
    pay_i: np.ndarray,
    autopay: np.ndarray,
    s: float,
) -> np.ndarray:
    """Binary target: churn next month (non-linear, with a tree-friendly interaction)."""
    overpriced = charges > PLAN_CHARGE_MEAN[plan_i] * (1.0 + 0.15 * s) + PLAN_CHARGE_SD[plan_i]
    return (
        -3.45
        + 2.0 * ((calls >= 3) & (tenure < 12))
        + 0.18 * np.minimum(calls, 6)
        + 0.6 * (plan_i == 0)
        + 0.8 * (~autopay & (pay_i == 3))
        + 0.35 * ~autopay
        + 0.7 * overpriced * (tenure < 24)
        - 0.012 * tenure
        + 0.4 * s
    )


def _segment(
    tenure: np.ndarray, charges: np.ndarray, plan_i: np.ndarray, gumbel: np.ndarray
) -> np.ndarray:
    """Multiclass target: segment, from plan, charges and tenure."""
    score = np.column_stack(
        [
            1.6 * (plan_i == 0) - 0.05 * (charges - 60.0),
            0.9 + 0.8 * (plan_i == 1),
            1.6 * (plan_i == 2) + 0.04 * (charges - 60.0) + 0.02 * tenure - 1.0,
        ]
    )
    return np.argmax(score + gumbel, axis=1)


def _poisson_from_uniform(lam: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Poisson draws by inverting the CDF with given uniforms (keeps the stream fixed)."""
    k = np.zeros(lam.shape, dtype=np.int64)
    p = np.exp(-lam)
    cdf = p.copy()
    for n in range(1, 60):
        below = u >= cdf
        if not below.any():
            break
        k += below
        p = p * lam / n
        cdf = cdf + p
    return k


def _add_dirt(
    frame: dict[str, np.ndarray],
    rng: np.random.Generator,
    tenure: np.ndarray,
    charges: np.ndarray,
    calls: np.ndarray,
) -> None:
    """Write a few dirty values per column (about 0.1% of rows per kind, at least one)."""
    rows = len(tenure)
    k = max(1, rows // 1000)

    def pick() -> np.ndarray:
        return rng.choice(rows, size=k, replace=False)

    # Out of range (invalid).
    idx = pick()
    frame["tenure_months"][idx] = [f"-{v}" for v in rng.integers(1, 13, k).tolist()]
    idx = pick()
    frame["monthly_charges"][idx] = [f"{v:.2f}" for v in (-rng.uniform(1, 50, k)).tolist()]
    idx = pick()
    frame["support_calls"][idx] = "999"
    # Unknown categories (invalid).
    idx = pick()
    frame["plan"][idx] = "gold"
    idx = pick()
    frame["region"][idx] = np.where(rng.random(k) < 0.5, "North ", "n/a")
    idx = pick()
    frame["payment_method"][idx] = "cheque"
    # Padded numbers (valid once stripped).
    idx = pick()
    frame["tenure_months"][idx] = [f" {v} " for v in tenure[idx].tolist()]
    idx = pick()
    frame["monthly_charges"][idx] = [f" {v:.1f} " for v in charges[idx].tolist()]
    idx = pick()
    frame["support_calls"][idx] = [f"{v} " for v in calls[idx].tolist()]


def generate_example(
    landing_dir: Path,
    *,
    start: dt.date = dt.date(2023, 1, 1),
    months: int = 36,
    rows_per_month: int = 2000,
    seed: int = 7,
) -> list[Path]:
    """Write one CSV per month (``YYYY-MM-01.csv``) into ``landing_dir``; return the paths.

    A month of more than CHUNK_ROWS rows is drawn and written chunk by chunk (each chunk
    seeded by ``(seed, month, chunk)``), so memory stays that of one chunk."""
    if not 1 <= rows_per_month <= MAX_MONTH_ROWS:
        raise ValueError(
            f"rows per month must be between 1 and {MAX_MONTH_ROWS:,}, got {rows_per_month:,}"
        )
    landing_dir = Path(landing_dir)
    landing_dir.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    for i in range(months):
        month = _month_start(start, i)
        path = landing_dir / f"{month.isoformat()}.csv"
        _write_atomic(path, _month_text(month, rows_per_month, seed, i, months))
        paths.append(path)
    return sorted(paths)


def _month_text(
    month: dt.date, rows: int, seed: int, month_index: int, n_months: int
) -> Iterator[str]:
    """A month's CSV text, one chunk at a time."""
    if rows <= CHUNK_ROWS:
        rng = np.random.default_rng([seed, month_index])
        yield generate_frame(month, rows, rng, month_index, n_months).to_csv(
            index=False, lineterminator="\n"
        )
        return
    for chunk, first in enumerate(range(0, rows, CHUNK_ROWS)):
        rng = np.random.default_rng([seed, month_index, chunk])
        size = min(CHUNK_ROWS, rows - first)
        frame = generate_frame(
            month, size, rng, month_index, n_months, id_offset=chunk * (MAX_ROWS + 1)
        )
        yield frame.to_csv(index=False, header=chunk == 0, lineterminator="\n")


def _write_atomic(path: Path, parts: Iterable[str]) -> None:
    """Write UTF-8 text to a temp file beside ``path``, then rename it into place."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            for text in parts:
                fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
