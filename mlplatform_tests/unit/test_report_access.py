"""Reports are one click away: the Dagster UI links to the serving app's review page when a
serving URL is configured (a file link otherwise), and report files are group-readable."""

from __future__ import annotations

import stat
from pathlib import Path

from mlplatform.resources.store import ArtifactStore
from mlplatform.steps.report import write_report


def test_report_link_goes_to_the_review_page_when_serving_is_configured(tmp_path: Path) -> None:
    served = ArtifactStore(
        home=str(tmp_path), assets_dir=str(tmp_path / "a"), serve_url="https://ml.example:8000/"
    )
    assert (
        served.report_link("churn", "2024-05-01")
        == "https://ml.example:8000/review/churn#report-2024-05-01"
    )
    local = ArtifactStore(home=str(tmp_path), assets_dir=str(tmp_path / "a"))
    link = local.report_link("churn", "2024-05-01")
    assert link == (tmp_path / "reports" / "churn" / "2024-05-01.html").resolve().as_uri()


def test_report_files_are_group_readable(tmp_path: Path) -> None:
    path = tmp_path / "reports" / "churn" / "2024-05-01.html"
    for html in ("<p>first</p>", "<p>rewritten</p>"):
        write_report(html, path)
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode & stat.S_IRGRP and mode & stat.S_IRUSR and mode & stat.S_IWUSR, oct(mode)
        assert not mode & (stat.S_IWGRP | stat.S_IWOTH), oct(mode)
        assert path.read_text() == html
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp file left
