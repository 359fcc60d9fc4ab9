"""The expert review page in a real browser (Debian's Chromium via Playwright), real uvicorn.

Two browser contexts against one server of this module (its own ledger, so the hot-swap
tests' promotions on the shared server do not matter): a reader sees candidates, production
metrics and the report's plots but is refused when approving; an approver approves one
candidate and rejects another, and the ledger holds both decisions with comment and actor.
A few quick TestClient checks of the report route and the page's headers come first.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from mlplatform.bundles.format import bundle_id_of
from mlplatform.serving.app import create_app
from mlplatform.steps.evaluate import PRODUCTION, EvaluationResult, ModelScores
from mlplatform.steps.gates import GateResult
from mlplatform.steps.report import render_report, write_report
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

SCREENSHOT = Path("/tmp/review.png")
P = f"/v1/projects/{PROJECT}"


def manifest(env: Env, key: str) -> dict[str, Any]:
    return json.loads((env.bundle_dir(key) / "manifest.json").read_text("utf-8"))


def publish_report(env: Env) -> str:
    """The real evaluation report (with its PNG plots) of the bundles' cutoff, where the
    platform writes it: ``<home>/reports/<project>/<cutoff>.html``. Returns the cutoff."""
    models: dict[str, ModelScores] = {}
    for key in ("a", "b", "c"):
        m = manifest(env, key)
        name = PRODUCTION if key == "a" else m["candidate"]
        hits = 40 + 10 * len(models)
        models[name] = ModelScores(
            name=name,
            metrics=m["metrics"],
            slices={},
            gates=[GateResult(**g) for g in m["gates"]],
            confusion={"labels": ["no", "yes"], "matrix": [[150, 35], [25, hits]]},
            curves={
                "yes": {
                    "fpr": [0, 0.2, 1],
                    "tpr": [0, 0.6, 1],
                    "precision": [1, 0.5, 0.3],
                    "recall": [0, 0.6, 1],
                }
            },
        )
    cutoff = manifest(env, "b")["cutoff"]
    result = EvaluationResult(
        cutoff=cutoff,
        task="binary",
        primary_metric="roc_auc",
        holdout_rows=250,
        models=models,
        winner=manifest(env, "b")["candidate"],
        reasons=[],
    )
    html = render_report(result, project=PROJECT)
    write_report(html, env.settings.reports_dir / PROJECT / f"{cutoff}.html")
    return cutoff


def publish_older_bundle(env: Env) -> str:
    """Bundle c relabelled as a candidate of the month before, with a better roc_auc than any
    bundle of the newer holdout: another holdout, so never "best" beside them. Returns its
    cutoff."""
    m = manifest(env, "c")
    older = (pd.Timestamp(m["cutoff"]) - pd.DateOffset(months=1)).strftime("%Y-%m-%d")
    body = {k: v for k, v in m.items() if k != "bundle_id"}
    relative = {
        "metric": "roc_auc",
        "value": 0.99,
        "min": None,
        "max": None,
        "passed": True,
        "min_lift": 0.1,
        "beat_baseline": False,
        "baseline": "baseline-prior",
        "baseline_value": 0.5,
        "lift": 0.49,
    }
    body.update(
        cutoff=older,
        candidate="old_forest",
        metrics={**m["metrics"], "roc_auc": 0.99},
        gates=[relative],
    )
    bundle_id = bundle_id_of(body)
    folder = env.settings.bundles_dir / bundle_id
    shutil.copytree(env.bundle_dir("c"), folder)
    (folder / "manifest.json").write_text(json.dumps({**body, "bundle_id": bundle_id}), "utf-8")
    env.ids["d"] = bundle_id
    return older


# -- the report route and the page's headers (no browser) -------------------------------


def test_report_route_serves_reports_to_readers_only(client: TestClient, env: Env) -> None:
    cutoff = "2023-04-01"
    path = env.settings.reports_dir / PROJECT / f"{cutoff}.html"
    path.parent.mkdir(parents=True)
    path.write_text("<!DOCTYPE html><title>r</title><img src='data:image/png;base64,AA=='>")
    assert client.get(f"{P}/reports/{cutoff}").status_code == 401
    r = client.get(f"{P}/reports/{cutoff}", headers=READER)
    assert r.status_code == 200 and r.text.startswith("<!DOCTYPE html>")
    assert r.headers["content-type"].startswith("text/html")
    assert "sandbox" in r.headers["content-security-policy"]
    assert client.get(f"{P}/reports/2023-05-01", headers=READER).status_code == 404
    assert client.get(f"/v1/projects/nope/reports/{cutoff}", headers=READER).status_code == 404
    (env.settings.home / "secret.html").write_text("secret")
    for bad in ("2023-4-1", "..", "..%2F..%2Fsecret", "%2E%2E", f"{cutoff}.html", "2023-04-01%00"):
        r = client.get(f"{P}/reports/{bad}", headers=READER)
        assert r.status_code in (404, 422), (bad, r.status_code)
        assert "secret" not in r.text


def test_review_page_is_a_static_shell_with_a_strict_policy(client: TestClient, env: Env) -> None:
    for url in ("/review", f"/review/{PROJECT}", "/review/unknown"):
        r = client.get(url)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
        for bundle_id in env.ids.values():  # no data without a token
            assert bundle_id not in r.text
        csp = r.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "script-src 'sha256-" in csp
        assert "unsafe-inline" not in csp.split("script-src")[1].split(";")[0]
        assert "http" not in r.text.replace("http-equiv", "")  # nothing loaded from elsewhere
        assert r.headers["x-frame-options"] == "DENY"


# -- the page in a real browser ----------------------------------------------------------


@dataclass
class Review:
    base_url: str
    env: Env
    cutoff: str
    older: str


@pytest.fixture(scope="module")
def review(built: Built, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Review]:
    """A real uvicorn server of this module: a is production, b and c are candidates of the
    same cutoff, d a candidate of the cutoff before."""
    env = make_env(built, tmp_path_factory.mktemp("review"), **TOKENS)
    cutoff = publish_report(env)
    older = publish_older_bundle(env)
    app = create_app(env.settings, poll_seconds=POLL)
    try:
        with uvicorn_thread(app) as url:
            yield Review(url, env, cutoff, older)
    finally:
        env.ledger.dispose()


@dataclass
class Tab:
    page: Any
    requests: list[str]
    problems: list[str]

    def check_clean(self, base_url: str, token: str) -> None:
        """Nothing loaded from elsewhere, no token in a URL, no script or CSP errors."""
        assert self.requests
        for url in self.requests:
            assert url.startswith((base_url + "/", "data:", "about:", "blob:")), url
            assert token not in url
        assert token not in self.page.url
        assert self.problems == []


@pytest.fixture
def tab(browser: Any) -> Iterator[Tab]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(15_000)
    page = context.new_page()
    found = Tab(page, [], [])
    page.on("request", lambda req: found.requests.append(req.url))
    page.on("pageerror", lambda exc: found.problems.append(f"page error: {exc}"))
    page.on(
        "console",
        lambda msg: (
            found.problems.append(f"console {msg.type}: {msg.text}")
            if msg.type == "error" and "403" not in msg.text  # the refused approval, on purpose
            else None
        ),
    )
    try:
        yield found
    finally:
        context.close()


def sign_in(page: Any, base_url: str, token: str) -> None:
    from playwright.sync_api import expect

    page.goto(f"{base_url}/review/{PROJECT}")
    expect(page.locator("#status")).to_contain_text("Paste a token")
    expect(page.locator("article.candidate")).to_have_count(0)
    page.get_by_label("API token").fill(token)
    page.get_by_role("button", name="Use token").click()
    expect(page.locator("article.candidate")).to_have_count(3)
    assert page.get_by_label("API token").input_value() == ""
    assert page.evaluate("sessionStorage.getItem('mlplatform.review.token')") == token


def test_reader_sees_metrics_report_and_cannot_approve(review: Review, tab: Tab) -> None:
    from playwright.sync_api import expect

    page, env = tab.page, review.env
    sign_in(page, review.base_url, READER_TOKEN)
    a, b, c = (manifest(env, k) for k in ("a", "b", "c"))

    # One section per holdout, newest cutoff first; production is compared only in the section
    # of its own cutoff, and the older candidate (the best number of all) only with itself.
    groups = page.locator("section.holdout")
    expect(groups).to_have_count(2)
    cutoffs = groups.evaluate_all("gs => gs.map((g) => g.dataset.cutoff)")
    assert cutoffs == [review.cutoff, review.older]
    newest, older = groups.nth(0), groups.nth(1)
    expect(newest.locator("h2 .tag")).to_have_text("production")
    expect(newest.locator("article.candidate")).to_have_count(2)
    expect(older.locator("article.candidate")).to_have_count(1)
    expect(older.locator(f'article[data-bundle-id="{env.ids["d"]}"]')).to_have_count(1)
    expect(older.locator(".holdout-note")).to_contain_text(
        f"was evaluated on the holdout of cutoff {review.cutoff}"
    )
    expect(older.locator("table.comparison thead th")).to_have_count(2)  # metric + old_forest
    expect(older.locator("td.best")).to_have_count(0)
    expect(older.locator("table.gates")).to_contain_text(
        "lift ≥ 0.1000 over baseline-prior (0.5000): lift 0.4900"
    )

    # Production first, then both candidates (newest first), side by side; the primary
    # metric is the first row and its best value (within this holdout) is highlighted.
    table = newest.locator("table.comparison")
    heads = table.locator("thead th").all_inner_texts()[1:]
    assert len(heads) == 3 and "production" in heads[0] and a["bundle_id"][:8] in heads[0]
    column = {
        k: i
        for k, m in zip("abc", (a, b, c), strict=True)
        for i, head in enumerate(heads)
        if m["bundle_id"][:8] in head and m["candidate"] in head
    }
    assert sorted(column.values()) == [0, 1, 2], heads
    primary = table.locator("tbody tr").first
    expect(primary.locator("th")).to_contain_text("roc_auc")
    expect(primary.locator("th")).to_contain_text("primary")
    cells = primary.locator("td")
    for key, m in zip("abc", (a, b, c), strict=True):
        expect(cells.nth(column[key])).to_contain_text(f"{m['metrics']['roc_auc']:.4f}")
    best = max("abc", key=lambda k: manifest(env, k)["metrics"]["roc_auc"])
    expect(primary.locator("td.best")).to_have_count(1)
    assert cells.nth(column[best]).get_attribute("class") == "best"

    # Gates and the training manifest of each candidate.
    card = page.locator(f'article[data-bundle-id="{b["bundle_id"]}"]')
    expect(card.locator("table.gates")).to_contain_text("roc_auc")
    expect(card.locator("table.gates")).to_contain_text("pass")
    partition = b["training_manifest"]["partitions"][0]
    expect(card.locator(".training")).to_contain_text(partition)
    expect(card.locator(".training")).to_contain_text(
        f"{b['training_manifest']['rows'][partition]:,}"
    )
    expect(card.locator(".decision-list")).to_contain_text("No approvals or rejections yet")

    # The evaluation report, fetched with the token, in a sandboxed frame: its plots load.
    frame = page.frame_locator(f"#report-{review.cutoff} iframe")
    expect(frame.locator("h1")).to_contain_text(f"evaluation for cutoff {review.cutoff}")
    page.wait_for_function(
        """(sel) => {
            const d = document.querySelector(sel)?.contentDocument;
            const imgs = d ? [...d.images] : [];
            return imgs.length >= 2 && imgs.every((i) => i.complete && i.naturalWidth > 0);
        }""",
        arg=f"#report-{review.cutoff} iframe",
    )

    # Approving with a reader token: the API's 403 is shown, the ledger is unchanged.
    before = env.ledger.decisions(PROJECT)
    card.get_by_label("Comment on").fill("reader tries to approve")
    card.get_by_role("button", name="Approve").click()
    alert = card.get_by_role("alert")
    expect(alert).to_be_visible()
    expect(alert).to_contain_text("403")
    expect(alert).to_contain_text("this route needs an approver token")
    expect(card.locator(".decision-list")).to_contain_text("No approvals or rejections yet")
    assert env.ledger.decisions(PROJECT) == before

    # The index lists the projects (with the same token, kept in this tab) and links here.
    page.goto(f"{review.base_url}/review")
    page.get_by_role("link", name=PROJECT, exact=True).click()
    expect(page.locator("article.candidate")).to_have_count(3)
    tab.check_clean(review.base_url, READER_TOKEN)


def test_approver_approves_and_rejects_with_comments(review: Review, tab: Tab) -> None:
    from playwright.sync_api import expect

    page, env = tab.page, review.env
    sign_in(page, review.base_url, APPROVER_TOKEN)
    b, c = env.ids["b"], env.ids["c"]
    for bundle_id, button, comment, shown in (
        (b, "Approve", "better roc_auc than production, gates pass", "approved by alice"),
        (c, "Reject", "too weak on the holdout", "rejected by alice"),
    ):
        card = page.locator(f'article[data-bundle-id="{bundle_id}"]')
        card.get_by_label("Comment on").fill(comment)
        card.get_by_role("button", name=button).click()
        expect(card.locator(".decision-list")).to_contain_text(shown)
        expect(card.locator(".decision-list")).to_contain_text(comment)
        expect(card.get_by_role("alert")).to_be_hidden()
        last = env.ledger.decisions(PROJECT, bundle_id)[-1]
        assert (last.decision, last.actor, last.comment) == (button.lower(), "alice", comment)

    page.screenshot(path=str(SCREENSHOT), full_page=True)
    page.reload()  # the token stays in this tab; the decisions come back from the API
    expect(page.locator(f'article[data-bundle-id="{b}"] .decision-list')).to_contain_text(
        "approved by alice"
    )
    tab.check_clean(review.base_url, APPROVER_TOKEN)


def copy_report(env: Env, cutoff: str, to: str) -> None:
    """The report of ``cutoff`` written again as the report of cutoff ``to``."""
    reports = env.settings.reports_dir / PROJECT
    html = (reports / f"{cutoff}.html").read_text("utf-8").replace(cutoff, to)
    write_report(html, reports / f"{to}.html")


def test_report_links_open_the_report(review: Review, tab: Tab) -> None:
    """A card's "evaluation report" link opens its cutoff's report (closed until then), and
    the link the Dagster UI shows (``/review/<project>#report-<cutoff>``, from
    ``ArtifactStore.report_link``) opens that report after sign-in, even for a cutoff with no
    bundle to review."""
    from playwright.sync_api import expect

    from mlplatform.resources.store import ArtifactStore

    page, env = tab.page, review.env
    copy_report(env, review.cutoff, review.older)
    no_bundle = (pd.Timestamp(review.older) - pd.DateOffset(months=1)).strftime("%Y-%m-%d")
    copy_report(env, review.cutoff, no_bundle)
    sign_in(page, review.base_url, READER_TOKEN)

    older = page.locator(f"#report-{review.older}")
    expect(older).not_to_have_attribute("open", "")
    card = page.locator(f'article[data-bundle-id="{env.ids["d"]}"]')
    card.get_by_role("link", name="evaluation report").click()
    expect(older).to_have_attribute("open", "")
    frame = page.frame_locator(f"#report-{review.older} iframe")
    expect(frame.locator("h1")).to_contain_text(f"evaluation for cutoff {review.older}")

    store = ArtifactStore(home=str(env.settings.home), assets_dir="-", serve_url=review.base_url)
    page.goto(f"{review.base_url}/review")  # a new document: the link below loads the page
    page.goto(store.report_link(PROJECT, no_bundle))
    expect(page.locator("article.candidate")).to_have_count(3)
    expect(page.locator(f"#report-{no_bundle}")).to_have_attribute("open", "")
    frame = page.frame_locator(f"#report-{no_bundle} iframe")
    expect(frame.locator("h1")).to_contain_text(f"evaluation for cutoff {no_bundle}")
    tab.check_clean(review.base_url, READER_TOKEN)
