"""Promotion ledger: approvals, rejections and the append-only production pointer."""

from __future__ import annotations

from mlplatform.ledger.store import (
    Decision,
    Ledger,
    LedgerError,
    Promotion,
    PromotionConflict,
)

__all__ = ["Decision", "Ledger", "LedgerError", "Promotion", "PromotionConflict"]
