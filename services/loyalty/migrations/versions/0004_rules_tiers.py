"""Earning rules, completed referrals, tier reviews; members' birth dates; an index for period sums.

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
        "earning_rules",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("program_id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("definition", sa.JSON(), nullable=False),
        sa.Column("valid_from", sa.DateTime(timezone=True), nullable=True),
        sa.Column("valid_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["program_id"], ["programs.id"], name=op.f("fk_earning_rules_program_id_programs")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_earning_rules")),
    )
    with op.batch_alter_table("earning_rules", schema=None) as batch_op:
        batch_op.create_index("ix_earning_rules_program_active", ["program_id", "active"], unique=False)

    op.create_table(
        "referrals",
        sa.Column("referred_member_id", sa.String(length=36), nullable=False),
        sa.Column("referrer_member_id", sa.String(length=36), nullable=False),
        sa.Column("program_id", sa.String(length=40), nullable=False),
        sa.Column("purchase_id", sa.String(length=64), nullable=True),
        sa.Column("referrer_points", sa.BigInteger(), nullable=False),
        sa.Column("referee_points", sa.BigInteger(), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("referred_member_id", name=op.f("pk_referrals")),
    )
    with op.batch_alter_table("referrals", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_referrals_referrer_member_id"), ["referrer_member_id"], unique=False
        )

    op.create_table(
        "tier_reviews",
        sa.Column("member_id", sa.String(length=36), nullable=False),
        sa.Column("period_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("program_id", sa.String(length=40), nullable=False),
        sa.Column("tier", sa.String(length=40), nullable=True),
        sa.Column("warned_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reviewed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("outcome", sa.String(length=20), nullable=True),
        sa.PrimaryKeyConstraint("member_id", "period_end", name=op.f("pk_tier_reviews")),
    )

    with op.batch_alter_table("members", schema=None) as batch_op:
        batch_op.add_column(sa.Column("birth_date", sa.Date(), nullable=True))

    with op.batch_alter_table("ledger_transactions", schema=None) as batch_op:
        batch_op.create_index(
            "ix_ledger_transactions_member_created", ["member_id", "created_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("ledger_transactions", schema=None) as batch_op:
        batch_op.drop_index("ix_ledger_transactions_member_created")
    with op.batch_alter_table("members", schema=None) as batch_op:
        batch_op.drop_column("birth_date")
    op.drop_table("tier_reviews")
    with op.batch_alter_table("referrals", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_referrals_referrer_member_id"))
    op.drop_table("referrals")
    with op.batch_alter_table("earning_rules", schema=None) as batch_op:
        batch_op.drop_index("ix_earning_rules_program_active")
    op.drop_table("earning_rules")
