"""Tests for the self-contained HTML evaluation report."""

from __future__ import annotations

import base64
import math
import os
import re
from html import unescape
from html.parser import HTMLParser
from pathlib import Path

import matplotlib.pyplot as plt
import pytest

from mlplatform.steps.evaluate import EvaluationResult, ModelScores
from mlplatform.steps.gates import GateResult
from mlplatform.steps.model_types import EpochLog
from mlplatform.steps.report import render_report, write_report

IMG = '<img src="data:image/png;base64,'
NAN = float("nan")


# ---------------------------------------------------------------------------- helpers


class _Tables(HTMLParser):
    """Tables by id: rows of cells, each cell (tag, attributes, text)."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[tuple[str, dict[str, str | None], str]]]] = {}
        self._table: str | None = None
        self._cell: tuple[str, dict[str, str | None]] | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self._table = dict(attrs).get("id") or f"table{len(self.tables)}"
            self.tables[self._table] = []
        elif tag == "tr" and self._table is not None:
            self.tables[self._table].append([])
        elif tag in ("td", "th") and self._table is not None:
            self._cell = (tag, dict(attrs))
            self._text = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self._table is not None:
            cell_tag, attrs = self._cell
            text = " ".join("".join(self._text).split())
            self.tables[self._table][-1].append((cell_tag, attrs, text))
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._text.append(data)


def tables(html: str) -> dict[str, list[list[tuple[str, dict[str, str | None], str]]]]:
    parser = _Tables()
    parser.feed(html)
    return parser.tables


def texts(row: list[tuple[str, dict[str, str | None], str]]) -> list[str]:
    return [text for _, _, text in row]


def metric_row(html: str, metric: str) -> list[tuple[str, dict[str, str | None], str]]:
    rows = [r for r in tables(html)["metrics"] if r and r[0][2].split()[0] == metric]
    assert len(rows) == 1, f"expected one row for {metric}"
    return rows[0][1:]


def _gates(metrics: dict[str, float], metric: str, lo: float) -> list[GateResult]:
    value = metrics.get(metric, NAN)
    return [GateResult(metric, value, lo, None, math.isfinite(value) and value >= lo)]


def _clf(
    name: str,
    metrics: dict[str, float],
    classes: list[str],
    curve_classes: list[str],
    slices: dict[str, dict[str, float]] | None = None,
) -> ModelScores:
    k = len(classes)
    matrix = [[5 if i == j else 1 for j in range(k)] for i in range(k)]
    curves = {
        c: {
            "fpr": [0.0, 0.2, 1.0],
            "tpr": [0.0, 0.7, 1.0],
            "precision": [1.0, 0.8, 0.5],
            "recall": [0.0, 0.6, 1.0],
        }
        for c in curve_classes
    }
    return ModelScores(
        name=name,
        metrics=metrics,
        slices=slices or {},
        gates=_gates(metrics, "roc_auc", 0.6),
        confusion={"labels": classes, "matrix": matrix},
        curves=curves,
    )


def binary_result() -> EvaluationResult:
    """production listed second on purpose: the report must still show it first."""
    a = {"roc_auc": 0.812345, "log_loss": 0.45, "accuracy": 0.7, "f1": 0.6}
    prod = {"roc_auc": 0.75, "log_loss": 0.5, "accuracy": 0.72, "f1": 0.55}
    b = {"roc_auc": NAN, "log_loss": 0.40, "accuracy": 0.65, "f1": 0.5}
    slices_a = {"north": {"rows": 40.0, "roc_auc": 0.9111}, "south": {"rows": 60.0, "roc_auc": NAN}}
    slices_p = {"north": {"rows": 40.0, "roc_auc": 0.7222}}
    models = {
        "cand_a": _clf("cand_a", a, ["no", "yes"], ["yes"], slices_a),
        "production": _clf("production", prod, ["no", "yes"], ["yes"], slices_p),
        "cand_b": _clf("cand_b", b, ["no", "yes"], ["yes"]),
    }
    return EvaluationResult(
        cutoff="2024-06-01",
        task="binary",
        primary_metric="roc_auc",
        holdout_rows=1234,
        models=models,
        winner="cand_a",
        reasons=["cand_b: gate roc_auc=nan outside [0.6, None]"],
    )


def multiclass_result() -> EvaluationResult:
    classes = ["a", "b", "c"]
    m1 = {"roc_auc": 0.55, "log_loss": 1.2, "accuracy": 0.4, "f1": 0.3}
    m2 = {"roc_auc": 0.58, "log_loss": 1.1, "accuracy": 0.45, "f1": 0.35}
    models = {
        "forest": _clf("forest", m1, classes, classes),
        # one class has no curve for this model: the class still gets one ROC/PR pair
        "logreg": _clf("logreg", m2, classes, ["a", "b"]),
    }
    return EvaluationResult(
        cutoff="2024-07-01",
        task="multiclass",
        primary_metric="roc_auc",
        holdout_rows=90,
        models=models,
        winner=None,
        reasons=[
            "forest: gate roc_auc=0.5500 outside [0.6, None]",
            "logreg: gate roc_auc=0.5800 outside [0.6, None] <&>",
        ],
    )


def regression_result() -> EvaluationResult:
    def reg(name: str, metrics: dict[str, float], shift: float) -> ModelScores:
        actual = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
        return ModelScores(
            name=name,
            metrics=metrics,
            slices={"x": {"rows": 3.0, "rmse": metrics["rmse"] + 0.1}},
            gates=[GateResult("rmse", metrics["rmse"], None, 2.0, metrics["rmse"] <= 2.0)],
            residuals={"actual": actual, "predicted": [v + shift for v in actual]},
        )

    models = {
        "ridge": reg("ridge", {"rmse": 1.5, "mae": 1.2, "r2": 0.61}, 0.5),
        "hgb": reg("hgb", {"rmse": 2.5, "mae": 1.0, "r2": 0.4}, -1.0),
    }
    return EvaluationResult(
        cutoff="2024-08-01",
        task="regression",
        primary_metric="rmse",
        holdout_rows=6,
        models=models,
        winner="ridge",
        reasons=["hgb: gate rmse=2.5000 outside [None, 2.0]"],
    )


@pytest.fixture(scope="module")
def binary_html() -> str:
    return render_report(binary_result(), project="churn")


# ---------------------------------------------------------------------------- content


def test_title_and_summary(binary_html: str) -> None:
    title = "churn — evaluation for cutoff 2024-06-01"
    assert f"<title>{title}</title>" in binary_html
    assert f"<h1>{title}</h1>" in binary_html
    summary = re.search(r'<p class="summary">(.*?)</p>', binary_html, re.S)
    assert summary is not None
    text = summary.group(1)
    assert "binary" in text and "1,234" in text and "roc_auc" in text
    assert "higher is better" in text
    assert '<b>Winner:</b> <span class="winner">cand_a</span>' in text
    assert "No candidate qualifies" not in binary_html
    assert "<li>cand_b: gate roc_auc=nan outside [0.6, None]</li>" in binary_html


def test_every_model_and_formatted_values(binary_html: str) -> None:
    header = texts(tables(binary_html)["metrics"][0])
    for name in ("production", "cand_a", "cand_b"):
        assert any(h.startswith(name) for h in header), name
    assert texts(metric_row(binary_html, "roc_auc")) == ["0.7500", "0.8123", "—"]
    assert texts(metric_row(binary_html, "log_loss")) == ["0.5000", "0.4500", "0.4000"]


def test_primary_metric_row_comes_first(binary_html: str) -> None:
    rows = tables(binary_html)["metrics"][1:]
    assert [r[0][2].split()[0] for r in rows] == ["roc_auc", "log_loss", "accuracy", "f1"]


def test_production_column_first_and_labelled(binary_html: str) -> None:
    header = tables(binary_html)["metrics"][0]
    assert texts(header)[1:] == [
        "production current production",
        "cand_a winner",
        "cand_b",
    ]


def test_without_production_keeps_model_order() -> None:
    result = binary_result()
    del result.models["production"]
    html = render_report(result, project="churn")
    assert texts(tables(html)["metrics"][0])[1:] == ["cand_a winner", "cand_b"]
    assert "current production" not in html


def test_best_value_per_row_respects_direction(binary_html: str) -> None:
    def best(metric: str) -> list[int]:
        row = metric_row(binary_html, metric)
        return [i for i, (_, attrs, _) in enumerate(row) if attrs.get("class") == "best"]

    # columns: production, cand_a, cand_b
    assert best("roc_auc") == [1]  # higher is better; NaN never wins
    assert best("log_loss") == [2]  # lower is better
    assert best("accuracy") == [0]


def test_nan_and_none_shown_as_dash() -> None:
    result = binary_result()
    result.models["cand_a"].metrics["accuracy"] = None  # type: ignore[assignment]
    result.models["cand_a"].metrics["f1"] = float("inf")
    html = render_report(result, project="churn")
    assert texts(metric_row(html, "roc_auc"))[2] == "—"
    assert texts(metric_row(html, "accuracy"))[1] == "—"
    assert texts(metric_row(html, "f1"))[1] == "—"
    assert "nan" not in texts(metric_row(html, "roc_auc"))


def test_html_is_escaped() -> None:
    result = binary_result()
    scores = result.models.pop("cand_b")
    scores.name = "<b>x"
    result.models["<b>x"] = scores
    result.reasons = ["<b>x: gate <failed> & more"]
    html = render_report(result, project="a&b <proj>", extra={"<k>": "<v>"})
    assert "<b>x" not in html
    assert "&lt;b&gt;x" in html
    assert "a&amp;b &lt;proj&gt;" in html
    assert "&lt;b&gt;x: gate &lt;failed&gt; &amp; more" in html
    assert "<k>" not in html and "&lt;k&gt;" in html and "&lt;v&gt;" in html


def test_attribute_values_are_escaped() -> None:
    result = binary_result()
    result.models["cand_b"].notes = ['"><script>x</script>', "it's"]
    html = render_report(result, project="churn")
    assert "<script>" not in html
    flags = re.findall(r'<span class="tag flag" title="([^"]*)">flagged</span>', html)
    assert flags, "the flagged model has no tag"
    for flag in flags:
        assert unescape(flag) == "\"><script>x</script>; it's"
        assert "<" not in flag and "'" not in flag


def test_no_winner_lists_reasons() -> None:
    html = render_report(multiclass_result(), project="iris")
    assert "No candidate qualifies" in html
    assert '<span class="winner">' not in html
    reasons = re.search(r'<ul class="reasons">(.*?)</ul>', html, re.S)
    assert reasons is not None
    assert reasons.group(1) == (
        "<li>forest: gate roc_auc=0.5500 outside [0.6, None]</li>"
        "<li>logreg: gate roc_auc=0.5800 outside [0.6, None] &lt;&amp;&gt;</li>"
    )


def test_gates_table(binary_html: str) -> None:
    rows = [texts(r) for r in tables(binary_html)["gates"]]
    assert rows[0] == ["Model", "Metric", "Value", "Bound", "Result"]
    assert rows[1:] == [
        ["production", "roc_auc", "0.7500", "≥ 0.6000", "pass"],
        ["cand_a", "roc_auc", "0.8123", "≥ 0.6000", "pass"],
        ["cand_b", "roc_auc", "—", "≥ 0.6000", "fail"],
    ]
    html = render_report(regression_result(), project="p")
    rows = [texts(r) for r in tables(html)["gates"]]
    assert rows[1:] == [
        ["ridge", "rmse", "1.5000", "≤ 2.0000", "pass"],
        ["hgb", "rmse", "2.5000", "≤ 2.0000", "fail"],
    ]


def test_slices_table(binary_html: str) -> None:
    rows = [texts(r) for r in tables(binary_html)["slices"]]
    assert rows[1] == ["rows", "roc_auc"] * 3
    assert rows[2:] == [
        ["north", "40", "0.7222", "40", "0.9111", "—", "—"],
        ["south", "—", "—", "60", "—", "—", "—"],
    ]


def test_slices_section_absent_without_slices() -> None:
    html = render_report(multiclass_result(), project="iris")
    assert "slices" not in tables(html)
    assert "Per-slice" not in html


def test_training_manifests_section() -> None:
    manifests = {
        "cand_a": {
            "partitions": ["2024-03-01", "2024-01-01", "2024-02-01"],
            "rows": {"2024-01-01": 100, "2024-02-01": 250, "2024-03-01": 1000},
            "data_versions": {"2024-01-01": "v1", "2024-02-01": None, "2024-03-01": "v3"},
        },
        "cand_b": {"partitions": ["2024-02-01"], "rows": {"2024-02-01": 7}, "data_versions": {}},
    }
    html = render_report(binary_result(), project="churn", training_manifests=manifests)
    rows = [texts(r) for r in tables(html)["training"]]
    assert rows[1:] == [
        ["cand_a", "2024-01-01 – 2024-03-01", "3", "1,350"],
        ["cand_b", "2024-02-01", "1", "7"],
    ]
    assert "training" not in tables(render_report(binary_result(), project="churn"))


def test_learning_curves_for_models_with_a_history() -> None:
    history = [  # as the training manifest stores it
        EpochLog(e, train_loss=1 / e, val_loss=0.5 + abs(e - 3) / 10, seconds=0.1).to_json()
        for e in range(1, 7)
    ]
    manifests = {
        "cand_a": {"partitions": ["2024-01-01"], "rows": {"2024-01-01": 1}},
        "cand_b": {"partitions": ["2024-01-01"], "history": history, "best_epoch": 3},
    }
    html = render_report(binary_result(), project="churn", training_manifests=manifests)
    section = html[html.index("<h2>Learning curves</h2>") :]
    assert section.count(IMG) == 1
    assert "Learning curve: cand_b (best epoch 3 of 6)" in section
    assert "cand_a" not in section
    assert html.count(IMG) == render_report(binary_result(), project="churn").count(IMG) + 1
    # no history anywhere (sklearn only): no section; a malformed history is skipped
    manifests["cand_b"] = {"history": [{"epoch": None}], "best_epoch": None}
    html = render_report(binary_result(), project="churn", training_manifests=manifests)
    assert "Learning curves" not in html


def test_search_section_for_tuned_models() -> None:
    found = {
        "metric": "roc_auc",
        "best_value": 0.81234,
        "complete": 4,
        "pruned": 2,
        "failed": 1,
        "resumed_from": 3,
        "best_params": {"learning_rate": 0.002, "hidden_layers": [32, 16]},
    }
    manifests = {"cand_a": {"partitions": ["2024-01-01"]}, "cand_b": {"search": found}}
    html = render_report(binary_result(), project="churn", training_manifests=manifests)
    rows = [texts(r) for r in tables(html)["search"]]
    assert rows[1:] == [
        [
            "cand_b",
            "roc_auc",
            "0.8123",
            "4",
            "2",
            "1",
            "3",
            "learning_rate=0.002, hidden_layers=[32, 16]",
        ]
    ]
    del manifests["cand_b"]["search"]
    html = render_report(binary_result(), project="churn", training_manifests=manifests)
    assert "search" not in tables(html) and "Hyperparameter search" not in html


def test_extra_footer(binary_html: str) -> None:
    assert "<footer>" not in binary_html
    html = render_report(binary_result(), project="churn", extra={"run_id": "abc123", "git": "f00"})
    footer = html[html.index("<footer>") :]
    assert [texts(r) for r in tables(footer)["extra"]] == [["run_id", "abc123"], ["git", "f00"]]


def test_sections_in_order() -> None:
    manifests = {
        "cand_a": {
            "partitions": ["2024-01-01"],
            "rows": {"2024-01-01": 1},
            "history": [{"epoch": 1, "train_loss": 0.7, "val_loss": 0.6}],
            "best_epoch": 1,
        }
    }
    html = render_report(
        binary_result(), project="churn", training_manifests=manifests, extra={"k": "v"}
    )
    marks = [
        "<h1>",
        '<p class="summary">',
        'id="metrics"',
        'id="gates"',
        "Confusion matrices",
        "ROC and precision-recall",
        'id="slices"',
        'id="training"',
        'id="learning"',
        'id="extra"',
    ]
    positions = [html.index(m) for m in marks]
    assert positions == sorted(positions)


# ---------------------------------------------------------------------------- plots


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (binary_result, 3 + 2),  # 3 confusion matrices + ROC/PR for the positive class
        (multiclass_result, 2 + 3 * 2),  # 2 confusion matrices + ROC/PR for each of 3 classes
        (regression_result, 2 + 1),  # 2 predicted-vs-actual scatters + 1 residual histogram
    ],
)
def test_plot_count(make: object, expected: int) -> None:
    html = render_report(make(), project="p")  # type: ignore[operator]
    assert html.count(IMG) == expected
    assert "<img" not in html.replace(IMG, "")


def test_plots_are_valid_inline_pngs(binary_html: str) -> None:
    datas = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', binary_html)
    assert len(datas) == binary_html.count(IMG)
    for data in datas:
        assert base64.b64decode(data, validate=True).startswith(b"\x89PNG\r\n\x1a\n")


def test_regression_has_no_classification_plots() -> None:
    html = render_report(regression_result(), project="p")
    assert "Confusion" not in html and "ROC" not in html
    assert "Predicted vs actual" in html and "Residual histogram" in html
    assert "lower is better" in html  # rmse is the primary metric


def test_self_contained(binary_html: str) -> None:
    lowered = binary_html.lower()
    assert "<style>" in lowered
    for external in ("http://", "https://", "<link", "<script", "@import", "url("):
        assert external not in lowered, external


def test_figures_are_closed() -> None:
    plt.close("all")
    for make in (binary_result, multiclass_result, regression_result):
        render_report(make(), project="p")
    assert plt.get_fignums() == []


# ---------------------------------------------------------------------------- writing


def test_write_report_creates_file_and_no_temp(tmp_path: Path, binary_html: str) -> None:
    target = tmp_path / "a" / "b" / "report.html"
    assert write_report(binary_html, target) == target
    assert target.read_text(encoding="utf-8") == binary_html
    assert sorted(p.name for p in target.parent.iterdir()) == ["report.html"]
    # overwriting replaces the content and still leaves nothing else behind
    assert write_report("<p>new</p>", target) == target
    assert target.read_text(encoding="utf-8") == "<p>new</p>"
    assert sorted(p.name for p in target.parent.iterdir()) == ["report.html"]


def test_write_report_failure_keeps_old_file_and_no_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "report.html"
    target.write_text("old", encoding="utf-8")

    def boom(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        write_report("<p>new</p>", target)
    assert target.read_text(encoding="utf-8") == "old"
    assert sorted(os.listdir(tmp_path)) == ["report.html"]
