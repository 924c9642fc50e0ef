"""Contacts and the timeline: the interactions table; purchases remember whom they were recorded for.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "interactions",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("customer_id", sa.String(36), nullable=False),
        sa.Column("origin_customer_id", sa.String(36), nullable=False),
        sa.Column("kind", sa.String(30), nullable=False),
        sa.Column("channel", sa.String(30), nullable=False),
        sa.Column("direction", sa.String(10), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source_system", sa.String(100), nullable=False),
        sa.Column("idempotency_key", sa.String(200)),
        sa.Column("agent_id", sa.String(100)),
        sa.Column("summary", sa.String(300)),
        sa.Column("text", sa.Text),
        sa.Column("tags", sa.JSON, nullable=False),
        sa.Column("attributes", sa.JSON, nullable=False),
        sa.Column("subject_type", sa.String(30)),
        sa.Column("subject_id", sa.String(36)),
        sa.Column("erased", sa.Boolean, nullable=False),
        sa.UniqueConstraint("source_system", "idempotency_key", name="uq_interactions_idempotency"),
    )
    op.create_index("ix_interactions_timeline", "interactions", ["customer_id", "occurred_at", "id"])
    op.create_index("ix_interactions_subject", "interactions", ["subject_type", "subject_id"])
    op.create_index("ix_interactions_origin_customer_id", "interactions", ["origin_customer_id"])
    with op.batch_alter_table("purchases") as batch:
        batch.add_column(sa.Column("origin_customer_id", sa.String(36)))
        batch.create_index("ix_purchases_origin_customer_id", ["origin_customer_id"])
    op.execute("UPDATE purchases SET origin_customer_id = customer_id")


def downgrade() -> None:
    with op.batch_alter_table("purchases") as batch:
        batch.drop_index("ix_purchases_origin_customer_id")
        batch.drop_column("origin_customer_id")
    op.drop_table("interactions")
