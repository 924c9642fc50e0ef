"""Satisfaction surveys: CSAT, NPS and attribute ratings, one row per answer (its contact is on the timeline).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "surveys",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("customer_id", sa.String(36), nullable=False),
        sa.Column("origin_customer_id", sa.String(36), nullable=False),
        sa.Column("interaction_id", sa.String(36), nullable=False),
        sa.Column("about_interaction_id", sa.String(36)),
        sa.Column("channel", sa.String(30), nullable=False),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("csat", sa.Integer),
        sa.Column("nps", sa.Integer),
        sa.Column("nps_category", sa.String(10)),
        sa.Column("ratings", sa.JSON, nullable=False),
        sa.Column("expectations", sa.JSON, nullable=False),
        sa.Column("overall", sa.Integer),
        sa.Column("overall_max", sa.Integer),
        sa.Column("comment", sa.Text),
        sa.Column("source_system", sa.String(100), nullable=False),
        sa.Column("idempotency_key", sa.String(200)),
        sa.UniqueConstraint("source_system", "idempotency_key", name="uq_surveys_idempotency"),
    )
    op.create_index("ix_surveys_customer_answered", "surveys", ["customer_id", "answered_at", "id"])
    op.create_index("ix_surveys_origin_customer_id", "surveys", ["origin_customer_id"])
    op.create_index("ix_surveys_about_interaction_id", "surveys", ["about_interaction_id"])
    op.create_index("ix_surveys_answered_at", "surveys", ["answered_at"])


def downgrade() -> None:
    op.drop_table("surveys")
