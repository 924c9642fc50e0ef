"""Facts from every event segmentation reads, and the features derived from them.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def new_features() -> list[sa.Column[object]]:
    return [
        sa.Column("erased", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("refund_count", sa.Integer, nullable=False, server_default="0"),
        sa.Column("currency", sa.String(3)),
        sa.Column("total_spend_minor", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("refunded_minor", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("net_spend_minor", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("average_order_minor", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("mean_interpurchase_days", sa.Float),
        sa.Column("channels", sa.JSON, nullable=False, server_default="[]"),
        sa.Column("channel_count", sa.Integer, nullable=False, server_default="0"),
        sa.Column("multichannel", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("contact_count", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_contact_at", sa.DateTime(timezone=True)),
        sa.Column("complaint_count", sa.Integer, nullable=False, server_default="0"),
        sa.Column("open_complaints", sa.Integer, nullable=False, server_default="0"),
        sa.Column("unanswered_complaints", sa.Integer, nullable=False, server_default="0"),
        sa.Column("sla_breaches", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_csat", sa.Integer),
        sa.Column("last_nps", sa.Integer),
        sa.Column("nps_category", sa.String(10)),
        sa.Column("last_survey_at", sa.DateTime(timezone=True)),
    ]


def upgrade() -> None:
    with op.batch_alter_table("customer_features") as batch:
        for column in new_features():
            batch.add_column(column)
    with op.batch_alter_table("customer_features") as batch:
        for column in new_features():
            if column.server_default is not None:
                batch.alter_column(column.name, server_default=None)
    op.create_table(
        "refund_facts",
        sa.Column("refund_id", sa.String(36), primary_key=True),
        sa.Column("purchase_id", sa.String(36), nullable=False),
        sa.Column("customer_id", sa.String(36), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("amount_minor", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_refund_facts_customer", "refund_facts", ["customer_id"])
    op.create_table(
        "contact_facts",
        sa.Column("interaction_id", sa.String(36), primary_key=True),
        sa.Column("customer_id", sa.String(36), nullable=False),
        sa.Column("kind", sa.String(30), nullable=False),
        sa.Column("channel", sa.String(30), nullable=False),
        sa.Column("direction", sa.String(10), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_contact_facts_customer_time", "contact_facts", ["customer_id", "occurred_at"])
    op.create_table(
        "complaint_facts",
        sa.Column("complaint_id", sa.String(36), primary_key=True),
        sa.Column("customer_id", sa.String(36), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True)),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("answered", sa.Boolean, nullable=False),
        sa.Column("open", sa.Boolean, nullable=False),
        sa.Column("breaches", sa.Integer, nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_complaint_facts_customer", "complaint_facts", ["customer_id"])
    op.create_table(
        "survey_facts",
        sa.Column("survey_id", sa.String(36), primary_key=True),
        sa.Column("customer_id", sa.String(36), nullable=False),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("csat", sa.Integer),
        sa.Column("nps", sa.Integer),
        sa.Column("overall", sa.Integer),
    )
    op.create_index("ix_survey_facts_customer_time", "survey_facts", ["customer_id", "answered_at"])
    op.create_table(
        "merged_customers",
        sa.Column("customer_id", sa.String(36), primary_key=True),
        sa.Column("merged_into", sa.String(36), nullable=False),
    )


def downgrade() -> None:
    for table in ("merged_customers", "survey_facts", "complaint_facts", "contact_facts", "refund_facts"):
        op.drop_table(table)
    with op.batch_alter_table("customer_features") as batch:
        for column in reversed(new_features()):
            batch.drop_column(column.name)
