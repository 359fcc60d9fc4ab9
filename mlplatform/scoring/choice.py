"""Which bundle scores what: production now, or production at a moment (ledger history)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from mlplatform.ledger import Ledger, Promotion


def production_at(history: Sequence[Promotion], when: datetime) -> str | None:
    """The bundle that was production at ``when`` (timezone-aware): the newest promotion or
    rollback recorded at or before it; None before the first one."""
    current = None
    for row in sorted(history, key=lambda r: r.seq):
        if row.created_at <= when:
            current = row.to_bundle
    return current


def current_production(ledger: Ledger, project: str) -> str | None:
    """The production bundle of ``project`` now (its newest ledger row)."""
    row = ledger.production(project)
    return row.to_bundle if row is not None else None
