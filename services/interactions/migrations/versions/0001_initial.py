"""Initial interactions schema: purchases, purchase lines, known customers, messaging tables.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from shared.messaging.tables import create_messaging_tables, drop_messaging_tables

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    create_messaging_tables()
    op.create_table(
        "known_customers",
        sa.Column("customer_id", sa.String(36), primary_key=True),
        sa.Column("learned_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "purchases",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("customer_id", sa.String(36), nullable=False),
        sa.Column("external_id", sa.String(100)),
        sa.Column("source_system", sa.String(100), nullable=False),
        sa.Column("channel", sa.String(30), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("total_minor", sa.BigInteger, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("source_system", "external_id", name="uq_purchases_source_system_external_id"),
    )
    op.create_index("ix_purchases_customer_time", "purchases", ["customer_id", "occurred_at"])
    op.create_table(
        "purchase_lines",
        sa.Column(
            "purchase_id", sa.String(36), sa.ForeignKey("purchases.id", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column("line_no", sa.Integer, primary_key=True),
        sa.Column("sku", sa.String(100), nullable=False),
        sa.Column("category", sa.String(100)),
        sa.Column("quantity", sa.Integer, nullable=False),
        sa.Column("unit_price_minor", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("purchase_lines")
    op.drop_table("purchases")
    op.drop_table("known_customers")
    drop_messaging_tables()
