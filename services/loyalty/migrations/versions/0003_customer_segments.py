"""Customer segments as segmentation announces them (for earning rules and reward eligibility).

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
        "customer_segments",
        sa.Column("customer_id", sa.String(36), nullable=False),
        sa.Column("segment_id", sa.String(64), nullable=False),
        sa.Column("segment_name", sa.String(200), nullable=False),
        sa.Column("member", sa.Boolean(), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("customer_id", "segment_id", name=op.f("pk_customer_segments")),
    )


def downgrade() -> None:
    op.drop_table("customer_segments")
