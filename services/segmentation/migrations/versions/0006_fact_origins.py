"""Fact origins (so an unmerge gives each customer its own facts back), registration facts, and the
satisfaction trend features.

Every fact table gains `origin_customer_id`, the customer the fact was recorded for, backfilled with
`customer_id` (facts moved by a merge before this revision keep the survivor as their origin: that
history is not recorded anywhere). `registration_facts` is backfilled from `customer_features`.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FACT_TABLES = ("purchase_facts", "refund_facts", "contact_facts", "complaint_facts", "survey_facts")


def upgrade() -> None:
    for table in FACT_TABLES:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("origin_customer_id", sa.String(36)))
        op.execute(f"UPDATE {table} SET origin_customer_id = customer_id")
        with op.batch_alter_table(table) as batch:
            batch.alter_column("origin_customer_id", existing_type=sa.String(36), nullable=False)
            batch.create_index(f"ix_{table}_origin_customer_id", ["origin_customer_id"])
    op.create_table(
        "registration_facts",
        sa.Column("origin_customer_id", sa.String(36), nullable=False),
        sa.Column("customer_id", sa.String(36), nullable=False),
        sa.Column("registered_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("origin_customer_id", name="pk_registration_facts"),
    )
    op.create_index("ix_registration_facts_customer_id", "registration_facts", ["customer_id"])
    op.execute(
        "INSERT INTO registration_facts (origin_customer_id, customer_id, registered_at) "
        "SELECT customer_id, customer_id, registered_at FROM customer_features "
        "WHERE registered_at IS NOT NULL"
    )
    with op.batch_alter_table("customer_features") as batch:
        batch.add_column(sa.Column("satisfaction_latest", sa.Float))
        batch.add_column(sa.Column("satisfaction_before", sa.Float))


def downgrade() -> None:
    with op.batch_alter_table("customer_features") as batch:
        batch.drop_column("satisfaction_before")
        batch.drop_column("satisfaction_latest")
    op.drop_index("ix_registration_facts_customer_id", "registration_facts")
    op.drop_table("registration_facts")
    for table in reversed(FACT_TABLES):
        with op.batch_alter_table(table) as batch:
            batch.drop_index(f"ix_{table}_origin_customer_id")
            batch.drop_column("origin_customer_id")
