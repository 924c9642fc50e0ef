"""Refunds and returns of purchases, payment status; outbound communications and their delivery history.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Purchases recorded before payment status existed were paid at the till.
    with op.batch_alter_table("purchases") as batch:
        batch.add_column(sa.Column("payment_status", sa.String(20), nullable=False, server_default="paid"))
        batch.add_column(sa.Column("payment_status_at", sa.DateTime(timezone=True)))
        batch.add_column(sa.Column("refunded_total_minor", sa.BigInteger, nullable=False, server_default="0"))
    with op.batch_alter_table("purchase_lines") as batch:
        batch.add_column(sa.Column("returned_quantity", sa.Integer, nullable=False, server_default="0"))

    op.create_table(
        "purchase_refunds",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column(
            "purchase_id",
            sa.String(36),
            sa.ForeignKey(
                "purchases.id", ondelete="CASCADE", name="fk_purchase_refunds_purchase_id_purchases"
            ),
            nullable=False,
        ),
        sa.Column("customer_id", sa.String(36), nullable=False),
        sa.Column("origin_customer_id", sa.String(36), nullable=False),
        sa.Column("source_system", sa.String(100), nullable=False),
        sa.Column("idempotency_key", sa.String(200), nullable=False),
        sa.Column("channel", sa.String(30), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("amount_minor", sa.BigInteger, nullable=False),
        sa.Column("reason", sa.String(200), nullable=False),
        sa.UniqueConstraint(
            "source_system", "idempotency_key", name="uq_purchase_refunds_source_system_idempotency_key"
        ),
    )
    op.create_index("ix_purchase_refunds_purchase_id", "purchase_refunds", ["purchase_id"])
    op.create_index("ix_purchase_refunds_origin_customer_id", "purchase_refunds", ["origin_customer_id"])
    op.create_index("ix_purchase_refunds_customer_time", "purchase_refunds", ["customer_id", "occurred_at"])
    op.create_table(
        "purchase_refund_lines",
        sa.Column(
            "refund_id",
            sa.String(36),
            sa.ForeignKey(
                "purchase_refunds.id",
                ondelete="CASCADE",
                name="fk_purchase_refund_lines_refund_id_purchase_refunds",
            ),
            primary_key=True,
        ),
        sa.Column("line_no", sa.Integer, primary_key=True),
        sa.Column("quantity", sa.Integer, nullable=False),
    )

    op.create_table(
        "communications",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("customer_id", sa.String(36), nullable=False),
        sa.Column("origin_customer_id", sa.String(36), nullable=False),
        sa.Column("channel", sa.String(30), nullable=False),
        sa.Column("campaign_id", sa.String(100)),
        sa.Column("template_id", sa.String(100)),
        sa.Column("subject", sa.String(300)),
        sa.Column("address", sa.String(500), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source_system", sa.String(100), nullable=False),
        sa.Column("idempotency_key", sa.String(200)),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("status_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("bounce_type", sa.String(10)),
        sa.Column("status_reason", sa.String(500)),
        sa.Column("interaction_id", sa.String(36), nullable=False),
        sa.UniqueConstraint(
            "source_system", "idempotency_key", name="uq_communications_source_system_idempotency_key"
        ),
    )
    op.create_index("ix_communications_origin_customer_id", "communications", ["origin_customer_id"])
    op.create_index("ix_communications_customer_time", "communications", ["customer_id", "sent_at"])
    op.create_table(
        "communication_deliveries",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column(
            "communication_id",
            sa.String(36),
            sa.ForeignKey(
                "communications.id",
                ondelete="CASCADE",
                name="fk_communication_deliveries_communication_id_communications",
            ),
            nullable=False,
        ),
        sa.Column("customer_id", sa.String(36), nullable=False),
        sa.Column("origin_customer_id", sa.String(36), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("bounce_type", sa.String(10)),
        sa.Column("reason", sa.String(500)),
        sa.Column("idempotency_key", sa.String(200)),
        sa.UniqueConstraint(
            "communication_id",
            "idempotency_key",
            name="uq_communication_deliveries_communication_id_idempotency_key",
        ),
    )
    op.create_index(
        "ix_communication_deliveries_communication_id", "communication_deliveries", ["communication_id"]
    )
    op.create_index("ix_communication_deliveries_customer_id", "communication_deliveries", ["customer_id"])
    op.create_index(
        "ix_communication_deliveries_origin_customer_id", "communication_deliveries", ["origin_customer_id"]
    )


def downgrade() -> None:
    op.drop_table("communication_deliveries")
    op.drop_table("communications")
    op.drop_table("purchase_refund_lines")
    op.drop_table("purchase_refunds")
    with op.batch_alter_table("purchase_lines") as batch:
        batch.drop_column("returned_quantity")
    with op.batch_alter_table("purchases") as batch:
        batch.drop_column("refunded_total_minor")
        batch.drop_column("payment_status_at")
        batch.drop_column("payment_status")
