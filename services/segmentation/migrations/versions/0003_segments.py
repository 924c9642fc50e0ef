"""Segments: definitions, members, and the history of entries and exits.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from shared.messaging.tables import BigIntPK

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "segments",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("description", sa.Text),
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column("definition", sa.JSON),
        sa.Column("time_relative", sa.Boolean, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("evaluated_at", sa.DateTime(timezone=True)),
        sa.UniqueConstraint("name", name="uq_segments_name"),
    )
    op.create_table(
        "segment_members",
        sa.Column(
            "segment_id",
            sa.String(36),
            sa.ForeignKey("segments.id", ondelete="CASCADE", name="fk_segment_members_segment_id_segments"),
            primary_key=True,
        ),
        sa.Column("customer_id", sa.String(36), primary_key=True),
        sa.Column("since", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_segment_members_customer", "segment_members", ["customer_id"])
    op.create_table(
        "segment_history",
        sa.Column("id", BigIntPK, primary_key=True, autoincrement=True),
        sa.Column("segment_id", sa.String(36), nullable=False),
        sa.Column("customer_id", sa.String(36), nullable=False),
        sa.Column("change", sa.String(10), nullable=False),
        sa.Column("cause", sa.String(10), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_segment_history_customer_at", "segment_history", ["customer_id", "at"])
    op.create_index("ix_segment_history_segment_at", "segment_history", ["segment_id", "at"])


def downgrade() -> None:
    op.drop_table("segment_history")
    op.drop_table("segment_members")
    op.drop_table("segments")
