"""Which bundle was production at a moment (ledger history); production now is
``ledger.pointer.production_bundle``."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from mlplatform.ledger import Promotion


def production_at(history: Sequence[Promotion], when: datetime) -> str | None:
    """The bundle that was production at ``when`` (timezone-aware): the newest promotion or
    rollback recorded at or before it; None before the first one."""
    current = None
    for row in sorted(history, key=lambda r: r.seq):
        if row.created_at <= when:
            current = row.to_bundle
    return current
