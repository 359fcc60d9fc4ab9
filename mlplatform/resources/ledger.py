"""The promotion ledger as a Dagster resource."""

from __future__ import annotations

from typing import TYPE_CHECKING

import dagster as dg
from pydantic import PrivateAttr

if TYPE_CHECKING:
    from mlplatform.ledger import Ledger


class LedgerResource(dg.ConfigurableResource):
    """Approvals, rejections and the append-only promotions table (SQLite or PostgreSQL)."""

    url: str

    _ledger: Ledger | None = PrivateAttr(default=None)

    @property
    def ledger(self) -> Ledger:
        if self._ledger is None:
            # imported on first use (SQLAlchemy and Alembic): defining assets stays light
            from mlplatform.ledger import Ledger

            self._ledger = Ledger(self.url)
        return self._ledger
