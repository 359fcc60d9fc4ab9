"""Promotion ledger: approvals, rejections and the append-only production pointer.

The names below load ``store`` (and SQLAlchemy) on first use, so ``ledger.pointer`` and
``ledger.names`` import without them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlplatform.ledger.store import (
        Decision,
        Ledger,
        LedgerError,
        Promotion,
        PromotionConflict,
    )

__all__ = ["Decision", "Ledger", "LedgerError", "Promotion", "PromotionConflict"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from mlplatform.ledger import store

        return getattr(store, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
