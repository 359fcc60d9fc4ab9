"""Hyperparameter search on a real PostgreSQL database shared with the promotion ledger (as in
production, where both live in the ``mlplatform`` database): a killed search resumes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa

from mlplatform.ledger import Ledger
from mlplatform.ledger.schema import metadata
from mlplatform.steps import search
from mlplatform_tests.e2e.test_ledger_postgres import postgres  # noqa: F401 (fixture)
from mlplatform_tests.projects import ProjectFactory
from mlplatform_tests.unit.test_ledger import PROJECT, schema_drift
from mlplatform_tests.unit.test_search import check_resume_after_kill, train_frame


def test_search_resumes_on_postgres_beside_the_ledger(
    postgres: str,  # noqa: F811
    make_project: ProjectFactory,
    tmp_path: Path,
) -> None:
    ledger = Ledger(postgres)
    ledger.promote(PROJECT, "b1", "bob", "first", expected_from=None)
    project = make_project("binary", months=3, rows=200)
    check_resume_after_kill(project.spec, train_frame(project), postgres, tmp_path)
    # Optuna's tables sit beside the ledger's without disturbing them
    assert ledger.production(PROJECT) is not None
    drift = [d for d in schema_drift(postgres) if _table(d[1]) in metadata.tables]
    assert drift == []
    engine = sa.create_engine(postgres)
    try:
        tables = set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()
    assert {"studies", "trials", "trial_heartbeats", *metadata.tables} <= tables
    ledger.dispose()
    assert search.safe_url(postgres) == postgres  # no password in this URL to hide


def _table(obj: Any) -> str | None:
    """The table a schema difference is about (a Table, or an Index/Column of one)."""
    table = getattr(obj, "table", obj)
    return getattr(table, "name", None)
