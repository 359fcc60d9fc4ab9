"""The evaluation report: one self-contained HTML file (inline CSS, inline PNG plots).

``view`` turns an EvaluationResult into what the page shows, ``plots`` draws the figures,
``templates/`` holds the page (Jinja2, autoescaped) and ``render`` puts them together."""

from mlplatform.steps.report.render import render_report
from mlplatform.steps.report.writing import write_report

__all__ = ["render_report", "write_report"]
