"""Shadow from the review page in a real browser: a refused shadow bundle is shown as such; a
reader is refused like the API refuses it; an approver's "Run in shadow" makes serving predict
logged requests with the candidate (the since-promotion panel shows its agreement), and "Stop
shadow" detaches it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from mlplatform.serving.app import create_app
from mlplatform.shadow import attach_shadow, read_shadow
from mlplatform_tests import waiting
from mlplatform_tests.serving.builders import PROJECT, Built
from mlplatform_tests.serving.servers import (
    APPROVER_TOKEN,
    POLL,
    READER,
    READER_TOKEN,
    TOKENS,
    Env,
    make_env,
    uvicorn_thread,
)
from mlplatform_tests.serving.test_prediction_log import LOGGED, logged, with_log
from mlplatform_tests.serving.test_review_browser import Tab, tab  # noqa: F401

pytestmark = pytest.mark.browser


@pytest.fixture
def served(built: Built, tmp_path: Path) -> Iterator[tuple[str, Env]]:
    env = make_env(built, tmp_path, **TOKENS)
    projects = with_log(built, tmp_path, rate=1.0, columns=LOGGED, flush_seconds=0.2)
    settings = env.settings.model_copy(update={"projects_dir": projects})
    try:
        with uvicorn_thread(create_app(settings, poll_seconds=POLL)) as url:
            yield url, env
    finally:
        env.ledger.dispose()


def use_token(page: Any, token: str) -> None:
    page.get_by_label("API token").fill(token)
    page.get_by_role("button", name="Use token").click()


def shadow_rows(url: str) -> int:
    return int(httpx.get(f"{url}/healthz", timeout=10).json()["shadow"][PROJECT]["predicted_rows"])


def test_run_in_shadow_and_stop_it_from_the_review_page(
    served: tuple[str, Env],
    tab: Tab,  # noqa: F811
) -> None:
    from playwright.sync_api import expect

    url, env = served
    home, c = env.settings.home, env.ids["c"]
    b = env.ids["b"]
    onnx = next(env.bundle_dir("b").rglob("*.onnx"))
    onnx.write_bytes(onnx.read_bytes() + b"\0")
    attach_shadow(home, PROJECT, b, "someone")  # behind the API's back: serving refuses it
    page = tab.page
    page.goto(f"{url}/review/{PROJECT}")
    use_token(page, READER_TOKEN)
    refused = page.locator(f'article[data-bundle-id="{b}"]')
    expect(refused.get_by_role("alert")).to_contain_text("not used by serving")
    expect(refused.get_by_role("alert")).to_contain_text("sha256 mismatch")
    expect(refused.get_by_role("button", name="Stop shadow")).to_be_visible()
    card = page.locator(f'article[data-bundle-id="{c}"]')
    card.get_by_role("button", name="Run in shadow").click()
    expect(card.get_by_role("alert")).to_contain_text("Run in shadow failed — HTTP 403")
    alert = card.get_by_role("alert")
    expect(alert).to_contain_text("cannot approve, reject or run them in shadow")
    assert getattr(read_shadow(home, PROJECT), "bundle_id", None) == b  # unchanged

    use_token(page, APPROVER_TOKEN)
    card.get_by_role("button", name="Run in shadow").click()
    expect(card.get_by_role("status")).to_contain_text("Running in shadow (attached by alice)")
    expect(card.get_by_role("button", name="Stop shadow")).to_be_visible()
    attached = read_shadow(home, PROJECT)
    assert attached is not None and (attached.bundle_id, attached.actor) == (c, "alice")
    expect(page.locator("#since-shadow")).to_contain_text("on 0 logged rows")

    with httpx.Client(base_url=url, headers=READER, timeout=30) as http:
        for rows in (env.rows[:1], env.rows[1:40], env.rows[40:100]):
            r = http.post(f"/v1/projects/{PROJECT}/predict", json={"rows": rows})
            assert r.status_code == 200 and c not in r.text
    waiting.wait_for("the shadow to predict", lambda: shadow_rows(url) == 100, 30)
    frame = logged(env)
    assert len(frame) == 100 and set(frame["shadow_bundle_id"]) == {c}
    agreement = (frame["label"] == frame["shadow_label"]).mean()
    page.reload()  # the token stays in this tab
    expect(page.locator("#shadow-agreement")).to_have_text(f"{100 * agreement:.1f}%")
    expect(page.locator("#since-shadow")).to_contain_text("on 100 logged rows")
    expect(card.locator("h3")).to_contain_text("in shadow")

    card.get_by_role("button", name="Stop shadow").click()
    expect(card.get_by_role("status")).to_contain_text("Shadow stopped")
    expect(card.get_by_role("button", name="Run in shadow")).to_be_visible()
    expect(page.locator("#since-shadow")).to_contain_text("no shadow candidate")
    expect(card.locator("h3")).not_to_contain_text("in shadow")
    assert read_shadow(home, PROJECT) is None
    # no evaluation report here (404); the altered bundle's files are refused (409)
    tab.problems = [p for p in tab.problems if "404" not in p and "409" not in p]
    tab.check_clean(url, APPROVER_TOKEN)
