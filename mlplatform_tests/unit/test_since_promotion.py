"""The "since promotion" panel on a known prediction log: traffic since the promotion and the
shadow bundle's agreement with production (only rows it predicted; labels or values)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from mlplatform.prediction_log import LogStore
from mlplatform.serving.log_batches import write_columns
from mlplatform.serving.since_promotion import agreement, read_log, shadow_agreement, traffic

pytestmark = pytest.mark.unit
NOW = dt.datetime.now(dt.UTC)
S = "s" * 64


def write_log(home: Path, at: dt.datetime, name: str, **columns: list[object]) -> None:
    rows = len(columns["label"])
    write_columns(
        LogStore.under_home(home),
        "shop",
        at.date(),
        name,
        {
            "time": [at.timestamp()] * rows,
            "request": columns.pop("request"),
            "row": list(range(rows)),
            "latency_ms": columns.pop("latency_ms"),
            **columns,
        },
    )


def test_agreement_on_a_known_log(tmp_path: Path) -> None:
    before = NOW - dt.timedelta(hours=2)
    promoted = NOW - dt.timedelta(hours=1)
    write_log(  # before the promotion: not counted
        tmp_path, before, "old", request=["o"], latency_ms=[1.0], label=["yes"],
        shadow_label=["no"], shadow_bundle_id=[S],
    )  # fmt: skip
    write_log(
        tmp_path, NOW, "new",
        request=["r1", "r1", "r1", "r2", "r2", "r3"],
        latency_ms=[10.0, 10.0, 10.0, 30.0, 30.0, 20.0],
        label=["yes", "no", "no", "yes", "no", "yes"],
        shadow_label=["yes", "yes", "no", "yes", None, "no"],
        shadow_bundle_id=[S, S, S, S, None, "other"],
    )  # fmt: skip
    columns = read_log(LogStore.under_home(tmp_path), "shop", promoted)
    assert traffic(columns).model_dump() == {
        "requests": 3,
        "rows": 6,
        "latency_p50_ms": 20.0,
        "latency_p95_ms": 30.0,
    }
    found = shadow_agreement(columns, S, regression=False)
    # rows predicted by S: yes/yes, no/yes, no/no, yes/yes -> 3 of 4
    assert (found.rows, found.agreed, found.rate) == (4, 3, 0.75)


def test_regression_agreement_within_five_percent() -> None:
    found = agreement(
        S, [100.0, 100.0, 10.0, 1.0], [104.0, 90.0, 10.4, 2.0], [S] * 4, regression=True
    )
    assert (found.rows, found.agreed, found.rate) == (4, 2, 0.5)
    assert found.mean_abs_difference == pytest.approx((4 + 10 + 0.4 + 1) / 4)


def test_no_log_no_agreement(tmp_path: Path) -> None:
    columns = read_log(LogStore.under_home(tmp_path), "shop", NOW)
    assert traffic(columns).requests == 0
    assert shadow_agreement(columns, S, regression=False).rate is None
