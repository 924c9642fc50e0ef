"""Programs, members, lots and lot movements, idempotency keys; richer ledger transactions.

Ledger rows written before this revision stay as they are (the books still balance); accounts get
`cached` true and transactions empty `details`.

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


def upgrade() -> None:
    op.create_table(
        "idempotency_keys",
        sa.Column("scope", sa.String(length=120), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=False),
        sa.Column("response", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("scope", "key", name=op.f("pk_idempotency_keys")),
    )
    op.create_table(
        "lot_movements",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("lot_id", sa.BigInteger(), nullable=False),
        sa.Column("transaction_id", sa.String(length=36), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lot_movements")),
    )
    with op.batch_alter_table("lot_movements", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_lot_movements_lot_id"), ["lot_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_lot_movements_transaction_id"), ["transaction_id"], unique=False)

    op.create_table(
        "lots",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("member_id", sa.String(length=36), nullable=False),
        sa.Column("program_id", sa.String(length=40), nullable=False),
        sa.Column("transaction_id", sa.String(length=36), nullable=False),
        sa.Column("source", sa.String(length=200), nullable=False),
        sa.Column("points", sa.BigInteger(), nullable=False),
        sa.Column("remaining", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("earned_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("available_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lots")),
    )
    with op.batch_alter_table("lots", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_lots_expires_at"), ["expires_at"], unique=False)
        batch_op.create_index(
            "ix_lots_member_status_expires", ["member_id", "status", "expires_at"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_lots_source"), ["source"], unique=False)
        batch_op.create_index(batch_op.f("ix_lots_transaction_id"), ["transaction_id"], unique=False)

    op.create_table(
        "programs",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=True),
        sa.Column("points_per_unit", sa.Integer(), nullable=False),
        sa.Column("pending_days", sa.Integer(), nullable=False),
        sa.Column("expiry_policy", sa.String(length=20), nullable=False),
        sa.Column("expiry_period", sa.Integer(), nullable=True),
        sa.Column("negative_policy", sa.String(length=20), nullable=False),
        sa.Column("negative_limit", sa.BigInteger(), nullable=False),
        sa.Column("expiring_notice_days", sa.Integer(), nullable=False),
        sa.Column("tiers", sa.JSON(), nullable=False),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_programs")),
    )
    op.create_table(
        "members",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("program_id", sa.String(length=40), nullable=False),
        sa.Column("customer_id", sa.String(length=36), nullable=False),
        sa.Column("card_number", sa.String(length=24), nullable=False),
        sa.Column("card_status", sa.String(length=20), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("tier", sa.String(length=40), nullable=True),
        sa.Column("tier_since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("referral_code", sa.String(length=16), nullable=False),
        sa.Column("referred_by", sa.String(length=36), nullable=True),
        sa.Column("household_id", sa.String(length=36), nullable=True),
        sa.Column("enrolled_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_activity_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["program_id"], ["programs.id"], name=op.f("fk_members_program_id_programs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_members")),
        sa.UniqueConstraint("card_number", name=op.f("uq_members_card_number")),
        sa.UniqueConstraint("program_id", "customer_id", name=op.f("uq_members_program_id_customer_id")),
        sa.UniqueConstraint("referral_code", name=op.f("uq_members_referral_code")),
    )
    with op.batch_alter_table("members", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_members_customer_id"), ["customer_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_members_household_id"), ["household_id"], unique=False)

    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("program_id", sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column("cached", sa.Boolean(), nullable=False, server_default=sa.true()))
        batch_op.alter_column(
            "id", existing_type=sa.VARCHAR(length=80), type_=sa.String(length=100), existing_nullable=False
        )

    with op.batch_alter_table("ledger_entries", schema=None) as batch_op:
        batch_op.alter_column(
            "account_id",
            existing_type=sa.VARCHAR(length=80),
            type_=sa.String(length=100),
            existing_nullable=False,
        )

    with op.batch_alter_table("ledger_transactions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("program_id", sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column("member_id", sa.String(length=36), nullable=True))
        batch_op.add_column(sa.Column("reason", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("actor", sa.String(length=120), nullable=True))
        batch_op.add_column(sa.Column("reverses_id", sa.String(length=36), nullable=True))
        batch_op.add_column(sa.Column("details", sa.JSON(), nullable=False, server_default="{}"))
        batch_op.create_index(batch_op.f("ix_ledger_transactions_created_at"), ["created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_ledger_transactions_member_id"), ["member_id"], unique=False)
        batch_op.create_unique_constraint(batch_op.f("uq_ledger_transactions_reverses_id"), ["reverses_id"])


def downgrade() -> None:
    with op.batch_alter_table("ledger_transactions", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_ledger_transactions_reverses_id"), type_="unique")
        batch_op.drop_index(batch_op.f("ix_ledger_transactions_member_id"))
        batch_op.drop_index(batch_op.f("ix_ledger_transactions_created_at"))
        batch_op.drop_column("details")
        batch_op.drop_column("reverses_id")
        batch_op.drop_column("actor")
        batch_op.drop_column("reason")
        batch_op.drop_column("member_id")
        batch_op.drop_column("program_id")

    with op.batch_alter_table("ledger_entries", schema=None) as batch_op:
        batch_op.alter_column(
            "account_id",
            existing_type=sa.String(length=100),
            type_=sa.VARCHAR(length=80),
            existing_nullable=False,
        )

    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.alter_column(
            "id", existing_type=sa.String(length=100), type_=sa.VARCHAR(length=80), existing_nullable=False
        )
        batch_op.drop_column("cached")
        batch_op.drop_column("program_id")

    with op.batch_alter_table("members", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_members_household_id"))
        batch_op.drop_index(batch_op.f("ix_members_customer_id"))

    op.drop_table("members")
    op.drop_table("programs")
    with op.batch_alter_table("lots", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_lots_transaction_id"))
        batch_op.drop_index(batch_op.f("ix_lots_source"))
        batch_op.drop_index("ix_lots_member_status_expires")
        batch_op.drop_index(batch_op.f("ix_lots_expires_at"))

    op.drop_table("lots")
    with op.batch_alter_table("lot_movements", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_lot_movements_transaction_id"))
        batch_op.drop_index(batch_op.f("ix_lot_movements_lot_id"))

    op.drop_table("lot_movements")
    op.drop_table("idempotency_keys")
