"""Initial segmentation schema: customer features, spend per currency, purchase facts, messaging tables.

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
        "customer_features",
        sa.Column("customer_id", sa.String(36), primary_key=True),
        sa.Column("registered_at", sa.DateTime(timezone=True)),
        sa.Column("first_purchase_at", sa.DateTime(timezone=True)),
        sa.Column("last_purchase_at", sa.DateTime(timezone=True)),
        sa.Column("purchase_count", sa.Integer, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "customer_spend",
        sa.Column("customer_id", sa.String(36), primary_key=True),
        sa.Column("currency", sa.String(3), primary_key=True),
        sa.Column("purchase_count", sa.Integer, nullable=False),
        sa.Column("total_minor", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "purchase_facts",
        sa.Column("purchase_id", sa.String(36), primary_key=True),
        sa.Column("customer_id", sa.String(36), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("total_minor", sa.BigInteger, nullable=False),
        sa.Column("channel", sa.String(30), nullable=False),
    )
    op.create_index("ix_purchase_facts_customer_time", "purchase_facts", ["customer_id", "occurred_at"])


def downgrade() -> None:
    op.drop_table("purchase_facts")
    op.drop_table("customer_spend")
    op.drop_table("customer_features")
    drop_messaging_tables()
