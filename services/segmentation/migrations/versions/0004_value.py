"""Customer value, risk and ladder stage: cut points, CLV fits, per-customer value, ladder history,
defections.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
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
        "rfm_cutpoints",
        sa.Column("dimension", sa.String(20), primary_key=True),
        sa.Column("computed_at", sa.DateTime(timezone=True), primary_key=True),
        sa.Column("cut_points", sa.JSON, nullable=False),
        sa.Column("population", sa.Integer, nullable=False),
    )
    op.create_table(
        "clv_models",
        sa.Column("fitted_at", sa.DateTime(timezone=True), primary_key=True),
        sa.Column("params", sa.JSON, nullable=False),
        sa.Column("customers", sa.Integer, nullable=False),
    )
    op.create_table(
        "customer_value",
        sa.Column("customer_id", sa.String(36), primary_key=True),
        sa.Column("rfm_r", sa.Integer),
        sa.Column("rfm_f", sa.Integer),
        sa.Column("rfm_m", sa.Integer),
        sa.Column("rfm_segment", sa.String(20)),
        sa.Column("currency", sa.String(3)),
        sa.Column("clv_historic_minor", sa.BigInteger, nullable=False),
        sa.Column("clv_predicted_minor", sa.BigInteger),
        sa.Column("value_tier", sa.String(10), nullable=False),
        sa.Column("risk_score", sa.Integer, nullable=False),
        sa.Column("risk_level", sa.String(10), nullable=False),
        sa.Column("risk_reasons", sa.JSON, nullable=False),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("lapsed", sa.Boolean, nullable=False),
        sa.Column("defection_reason", sa.String(40)),
        sa.Column("ladder_stage", sa.String(12), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_customer_value_tier_risk", "customer_value", ["value_tier", "risk_level"])
    op.create_table(
        "ladder_history",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("customer_id", sa.String(36), nullable=False),
        sa.Column("from_stage", sa.String(12)),
        sa.Column("to_stage", sa.String(12), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.String(200), nullable=False),
    )
    op.create_index("ix_ladder_history_customer_at", "ladder_history", ["customer_id", "at"])
    op.create_table(
        "defections",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("customer_id", sa.String(36), nullable=False),
        sa.Column("reason", sa.String(40), nullable=False),
        sa.Column("note", sa.String(500)),
        sa.Column("noted_by", sa.String(100), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_defections_customer", "defections", ["customer_id"])


def downgrade() -> None:
    op.drop_table("defections")
    op.drop_table("ladder_history")
    op.drop_table("customer_value")
    op.drop_table("clv_models")
    op.drop_table("rfm_cutpoints")
