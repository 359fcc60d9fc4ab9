"""Alembic migration scripts of the promotion ledger (run by ``Ledger(url)``)."""
