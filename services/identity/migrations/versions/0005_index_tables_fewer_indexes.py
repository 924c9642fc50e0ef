"""Index tables: two indexes fewer on blocking keys, one fewer on search keys and identifiers.

Every index costs every insert, and a record writes ~15 rows into these tables (~8 blocking keys).
None of them is ever read by customer, so their customer_id indexes go; the blocking keys' primary
key now leads with the source record, which makes its separate source-record index redundant.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for table in ("identifiers", "blocking_keys", "search_keys"):
        op.drop_index(f"ix_{table}_customer_id", table_name=table)
    with op.batch_alter_table("blocking_keys") as batch:
        batch.drop_constraint("pk_blocking_keys", type_="primary")
        batch.create_primary_key("pk_blocking_keys", ["source_record_id", "key"])
    op.drop_index("ix_blocking_keys_source_record_id", table_name="blocking_keys")


def downgrade() -> None:
    op.create_index("ix_blocking_keys_source_record_id", "blocking_keys", ["source_record_id"])
    with op.batch_alter_table("blocking_keys") as batch:
        batch.drop_constraint("pk_blocking_keys", type_="primary")
        batch.create_primary_key("pk_blocking_keys", ["key", "source_record_id"])
    for table in ("identifiers", "blocking_keys", "search_keys"):
        op.create_index(f"ix_{table}_customer_id", table, ["customer_id"])
