"""Initial ledger tables: decisions and append-only promotions.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Create ``ledger_decisions`` and ``ledger_promotions`` with their indexes."""
    op.create_table(
        "ledger_decisions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("project", sa.String(255), nullable=False),
        sa.Column("bundle_id", sa.String(255), nullable=False),
        sa.Column("decision", sa.String(16), nullable=False),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("comment", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "decision IN ('approve', 'reject')", name="ck_ledger_decisions_decision"
        ),
    )
    op.create_index(
        "ix_ledger_decisions_project_bundle", "ledger_decisions", ["project", "bundle_id"]
    )
    op.create_table(
        "ledger_promotions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("project", sa.String(255), nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("from_bundle", sa.String(255), nullable=True),
        sa.Column("to_bundle", sa.String(255), nullable=False),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("kind IN ('promote', 'rollback')", name="ck_ledger_promotions_kind"),
        sa.UniqueConstraint("project", "seq", name="uq_ledger_promotions_project_seq"),
    )
    op.create_index(
        "ix_ledger_promotions_project_to_bundle", "ledger_promotions", ["project", "to_bundle"]
    )


def downgrade() -> None:
    """Drop both tables (only for development; the ledger itself never downgrades)."""
    op.drop_index("ix_ledger_promotions_project_to_bundle", table_name="ledger_promotions")
    op.drop_table("ledger_promotions")
    op.drop_index("ix_ledger_decisions_project_bundle", table_name="ledger_decisions")
    op.drop_table("ledger_decisions")
