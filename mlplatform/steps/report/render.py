"""Render the evaluation report through its Jinja2 template (autoescaped)."""

from __future__ import annotations

from functools import cache

import jinja2

from mlplatform.steps.evaluate import EvaluationResult
from mlplatform.steps.report import view
from mlplatform.steps.report.formatting import fmt_int


@cache
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("mlplatform.steps.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.globals["fmt_int"] = fmt_int
    return env


def render_report(
    result: EvaluationResult,
    *,
    project: str,
    training_manifests: dict[str, dict] | None = None,
    extra: dict[str, str] | None = None,
) -> str:
    """The evaluation report as one self-contained HTML document."""
    report = view.build(result, project, training_manifests, extra)
    return _environment().get_template("report.html.j2").render(report=report)
