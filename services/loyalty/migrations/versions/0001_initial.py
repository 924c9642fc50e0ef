"""Initial loyalty schema: accounts, ledger transactions and entries, messaging tables.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from shared.messaging.tables import BigIntPK, create_messaging_tables, drop_messaging_tables

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    create_messaging_tables()
    op.create_table(
        "accounts",
        sa.Column("id", sa.String(80), primary_key=True),
        sa.Column("owner_kind", sa.String(20), nullable=False),
        sa.Column("owner_id", sa.String(80), nullable=False),
        sa.Column("kind", sa.String(30), nullable=False),
        sa.Column("balance", sa.BigInteger, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("owner_kind", "owner_id", "kind", name="uq_accounts_owner_kind_owner_id_kind"),
    )
    op.create_table(
        "ledger_transactions",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("kind", sa.String(30), nullable=False),
        sa.Column("reference", sa.String(200), nullable=False, unique=True),
        sa.Column("customer_id", sa.String(36)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_ledger_transactions_customer_id", "ledger_transactions", ["customer_id"])
    op.create_table(
        "ledger_entries",
        sa.Column("id", BigIntPK, primary_key=True, autoincrement=True),
        sa.Column("transaction_id", sa.String(36), sa.ForeignKey("ledger_transactions.id"), nullable=False),
        sa.Column("account_id", sa.String(80), sa.ForeignKey("accounts.id"), nullable=False),
        sa.Column("amount", sa.BigInteger, nullable=False),
        sa.Column("line_no", sa.Integer, nullable=False),
    )
    op.create_index("ix_ledger_entries_transaction_id", "ledger_entries", ["transaction_id"])
    op.create_index("ix_ledger_entries_account_id", "ledger_entries", ["account_id"])


def downgrade() -> None:
    op.drop_table("ledger_entries")
    op.drop_table("ledger_transactions")
    op.drop_table("accounts")
    drop_messaging_tables()
