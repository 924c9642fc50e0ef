"""Blocking keys: an index on (key, customer_id), so candidates are read from the index alone.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_blocking_keys_key_customer_id", "blocking_keys", ["key", "customer_id"])


def downgrade() -> None:
    op.drop_index("ix_blocking_keys_key_customer_id", table_name="blocking_keys")
