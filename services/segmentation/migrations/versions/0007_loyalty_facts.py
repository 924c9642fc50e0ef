"""Loyalty facts (memberships and tiers, completed referrals, points earned and redeemed) and the
loyalty features computed from them.

Existing customers start with empty loyalty features: the facts come from the loyalty service's events
(`crm.loyalty.members`, `crm.loyalty.points`), which segmentation did not read before this revision; a
replay of those topics followed by a recompute fills them in.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def new_features() -> list[sa.Column[object]]:
    return [
        sa.Column("loyalty_member", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("loyalty_programs", sa.JSON, nullable=False, server_default="[]"),
        sa.Column("loyalty_tier", sa.String(40)),
        sa.Column("member_since", sa.DateTime(timezone=True)),
        sa.Column("referrals_made", sa.Integer, nullable=False, server_default="0"),
        sa.Column("points_earned", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("points_redeemed", sa.BigInteger, nullable=False, server_default="0"),
    ]


def upgrade() -> None:
    with op.batch_alter_table("customer_features") as batch:
        for column in new_features():
            batch.add_column(column)
    with op.batch_alter_table("customer_features") as batch:
        for column in new_features():
            if column.server_default is not None:
                batch.alter_column(column.name, server_default=None)
    op.create_table(
        "loyalty_membership_facts",
        sa.Column("member_id", sa.String(36), nullable=False),
        sa.Column("customer_id", sa.String(36), nullable=False),
        sa.Column("origin_customer_id", sa.String(36), nullable=False),
        sa.Column("program_id", sa.String(40), nullable=False),
        sa.Column("enrolled_at", sa.DateTime(timezone=True)),
        sa.Column("tier", sa.String(40)),
        sa.Column("tier_changed_at", sa.DateTime(timezone=True)),
        sa.PrimaryKeyConstraint("member_id", name="pk_loyalty_membership_facts"),
    )
    op.create_index("ix_loyalty_membership_facts_customer", "loyalty_membership_facts", ["customer_id"])
    op.create_index(
        "ix_loyalty_membership_facts_origin_customer_id", "loyalty_membership_facts", ["origin_customer_id"]
    )
    op.create_table(
        "referral_facts",
        sa.Column("referred_customer_id", sa.String(36), nullable=False),
        sa.Column("program_id", sa.String(40), nullable=False),
        sa.Column("customer_id", sa.String(36), nullable=False),
        sa.Column("origin_customer_id", sa.String(36), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("referred_customer_id", "program_id", name="pk_referral_facts"),
    )
    op.create_index("ix_referral_facts_customer", "referral_facts", ["customer_id"])
    op.create_index("ix_referral_facts_origin_customer_id", "referral_facts", ["origin_customer_id"])
    op.create_table(
        "loyalty_points_facts",
        sa.Column("transaction_id", sa.String(36), nullable=False),
        sa.Column("customer_id", sa.String(36), nullable=False),
        sa.Column("origin_customer_id", sa.String(36), nullable=False),
        sa.Column("program_id", sa.String(40), nullable=False),
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column("points", sa.BigInteger, nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("transaction_id", name="pk_loyalty_points_facts"),
    )
    op.create_index("ix_loyalty_points_facts_customer", "loyalty_points_facts", ["customer_id"])
    op.create_index(
        "ix_loyalty_points_facts_origin_customer_id", "loyalty_points_facts", ["origin_customer_id"]
    )


def downgrade() -> None:
    for table in ("loyalty_points_facts", "referral_facts", "loyalty_membership_facts"):
        op.drop_index(f"ix_{table}_origin_customer_id", table)
        op.drop_index(f"ix_{table}_customer", table)
        op.drop_table(table)
    with op.batch_alter_table("customer_features") as batch:
        for column in reversed(new_features()):
            batch.drop_column(column.name)
