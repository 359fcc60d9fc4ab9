"""The review page's "since promotion" panel in a real browser: traffic and shadow agreement
from a known prediction log, drift and decay from the monitoring asset's daily summaries."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlplatform.prediction_log import write_monitoring_summary
from mlplatform.serving.app import create_app
from mlplatform.serving.log_batches import write_columns
from mlplatform.shadow import attach_shadow
from mlplatform_tests.serving.builders import PROJECT, Built
from mlplatform_tests.serving.servers import (
    POLL,
    READER_TOKEN,
    TOKENS,
    Env,
    make_env,
    uvicorn_thread,
)
from mlplatform_tests.serving.test_review_browser import Tab, tab  # noqa: F401

pytestmark = pytest.mark.browser


def known_log(env: Env) -> None:
    """Three requests, six rows, after the promotion; the shadow ``c`` predicted four rows
    of them and agreed on three."""
    now = dt.datetime.now(dt.UTC)
    c = env.ids["c"]
    write_columns(
        env.settings.prediction_log,
        PROJECT,
        now.date(),
        "known",
        {
            "time": [now.timestamp()] * 6,
            "request": ["r1", "r1", "r1", "r2", "r2", "r3"],
            "row": [0, 1, 2, 0, 1, 0],
            "bundle_id": [env.ids["a"]] * 6,
            "latency_ms": [10.0, 10.0, 10.0, 30.0, 30.0, 20.0],
            "label": ["yes", "no", "no", "yes", "no", "yes"],
            "shadow_bundle_id": [c, c, c, c, None, None],
            "shadow_label": ["yes", "yes", "no", "yes", None, None],
        },
    )
    attach_shadow(env.settings.home, PROJECT, c, "alice")
    common = {"requests": 3, "rows": 6, "decay_metric": "f1"}
    write_monitoring_summary(
        env.settings.home, PROJECT, now.date() + dt.timedelta(days=1),
        {**common, "day": (now.date() + dt.timedelta(days=1)).isoformat(), "drifted": 2,
         "drift": "plan: share 0.4; monthly_charges: psi 0.9",
         "decay_passed": False, "decay_live": 0.41, "decay_holdout": 0.62,
         "decay": "f1 0.4100 vs holdout 0.6200: worse by 0.2100",
         "shadow_bundle_id": c, "shadow_live": 0.58},
    )  # fmt: skip
    write_monitoring_summary(
        env.settings.home, PROJECT, now.date(),
        {**common, "day": now.date().isoformat(), "drifted": 0, "drift": "no drift",
         "decay_passed": None, "decay": "no labels landed for this day yet"},
    )  # fmt: skip


@pytest.fixture
def served(built: Built, tmp_path: Path) -> Iterator[tuple[str, Env]]:
    env = make_env(built, tmp_path, **TOKENS)
    known_log(env)
    try:
        with uvicorn_thread(create_app(env.settings, poll_seconds=POLL)) as url:
            yield url, env
    finally:
        env.ledger.dispose()


def test_the_panel_shows_traffic_drift_decay_and_shadow_agreement(
    served: tuple[str, Env],
    tab: Tab,  # noqa: F811
) -> None:
    from playwright.sync_api import expect

    url, env = served
    page = tab.page
    page.goto(f"{url}/review/{PROJECT}")
    page.get_by_label("API token").fill(READER_TOKEN)
    page.get_by_role("button", name="Use token").click()
    expect(page.locator("article.candidate")).to_have_count(2)
    panel = page.locator("#since-promotion")
    expect(panel.locator("#since-traffic")).to_contain_text("3 requests · 6 rows")
    expect(panel.locator("#since-traffic")).to_contain_text("p50 20.0000 ms · p95 30.0000 ms")
    expect(panel.locator("#shadow-agreement")).to_have_text("75.0%")
    expect(panel.locator("#since-shadow")).to_contain_text("on 4 logged rows (3 agreed)")
    expect(panel.locator("#since-shadow")).to_contain_text(
        "f1 0.5800 (shadow) vs 0.4100 (production)"
    )
    card = page.locator(f'article[data-bundle-id="{env.ids["c"]}"] h3')
    expect(card).to_contain_text("in shadow · 75.0% agreement")
    expect(panel.locator("#since-drift")).to_contain_text("1 of 2 monitored days drifted")
    expect(panel.locator("#since-drift")).to_contain_text("monthly_charges: psi 0.9")
    expect(panel.locator("#since-decay")).to_contain_text("1 of 1 labelled day decayed")
    expect(panel.locator("#since-decay")).to_contain_text("worse by 0.2100")
    expect(panel.locator("#since-promoted")).to_contain_text(env.ids["a"][:8])
    tab.problems = [p for p in tab.problems if "404" not in p]  # no evaluation report here
    tab.check_clean(url, READER_TOKEN)
