"""Complaints: the complaints, their history, and the service-level policies per channel and priority.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "complaints",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("customer_id", sa.String(36), nullable=False),
        sa.Column("origin_customer_id", sa.String(36), nullable=False),
        sa.Column("channel", sa.String(30), nullable=False),
        sa.Column("priority", sa.String(10), nullable=False),
        sa.Column("category", sa.String(50), nullable=False),
        sa.Column("subject", sa.String(300), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("owner_id", sa.String(100)),
        sa.Column("owner_authority_minor", sa.BigInteger),
        sa.Column("owner_authority_currency", sa.String(3)),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("first_response_at", sa.DateTime(timezone=True)),
        sa.Column("resolved_at", sa.DateTime(timezone=True)),
        sa.Column("closed_at", sa.DateTime(timezone=True)),
        sa.Column("first_response_due", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resolution_due", sa.DateTime(timezone=True), nullable=False),
        sa.Column("next_due_at", sa.DateTime(timezone=True)),
        sa.Column("first_response_breached", sa.Boolean, nullable=False),
        sa.Column("resolution_breached", sa.Boolean, nullable=False),
        sa.Column("escalation_level", sa.Integer, nullable=False),
        sa.Column("reopen_count", sa.Integer, nullable=False),
        sa.Column("last_seq", sa.Integer, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("source_system", sa.String(100), nullable=False),
        sa.Column("idempotency_key", sa.String(200)),
        sa.Column("opened_by", sa.String(100)),
        sa.Column("interaction_id", sa.String(36), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("source_system", "idempotency_key", name="uq_complaints_idempotency"),
    )
    op.create_index("ix_complaints_origin_customer_id", "complaints", ["origin_customer_id"])
    op.create_index("ix_complaints_queue", "complaints", ["next_due_at", "id"])
    op.create_index("ix_complaints_customer", "complaints", ["customer_id", "opened_at"])
    op.create_index("ix_complaints_owner", "complaints", ["owner_id", "next_due_at"])
    op.create_index("ix_complaints_opened_at", "complaints", ["opened_at"])
    op.create_index(
        "ix_complaints_first_response_watch", "complaints", ["first_response_breached", "first_response_due"]
    )
    op.create_index("ix_complaints_resolution_watch", "complaints", ["resolution_breached", "resolution_due"])

    op.create_table(
        "complaint_events",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column(
            "complaint_id",
            sa.String(36),
            sa.ForeignKey(
                "complaints.id", ondelete="CASCADE", name="fk_complaint_events_complaint_id_complaints"
            ),
            nullable=False,
        ),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("customer_id", sa.String(36), nullable=False),
        sa.Column("origin_customer_id", sa.String(36), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor_id", sa.String(100)),
        sa.Column("from_status", sa.String(20)),
        sa.Column("to_status", sa.String(20)),
        sa.Column("direction", sa.String(10)),
        sa.Column("channel", sa.String(30)),
        sa.Column("text", sa.Text),
        sa.Column("details", sa.JSON, nullable=False),
        sa.UniqueConstraint("complaint_id", "seq", name="uq_complaint_events_seq"),
    )
    op.create_index("ix_complaint_events_customer_id", "complaint_events", ["customer_id"])
    op.create_index("ix_complaint_events_origin_customer_id", "complaint_events", ["origin_customer_id"])

    op.create_table(
        "complaint_sla_policies",
        sa.Column("channel", sa.String(30), primary_key=True),
        sa.Column("priority", sa.String(10), primary_key=True),
        sa.Column("first_response_minutes", sa.Integer, nullable=False),
        sa.Column("resolution_minutes", sa.Integer, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(100)),
    )


def downgrade() -> None:
    op.drop_table("complaint_sla_policies")
    op.drop_table("complaint_events")
    op.drop_table("complaints")
