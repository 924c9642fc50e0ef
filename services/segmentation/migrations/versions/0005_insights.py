"""Insights: clustering runs and assignments (micro-segments), next-best-action playbooks.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "cluster_runs",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("k", sa.Integer, nullable=False),
        sa.Column("features", sa.JSON, nullable=False),
        sa.Column("currency", sa.String(3)),
        sa.Column("population", sa.Integer, nullable=False),
        sa.Column("sample_size", sa.Integer, nullable=False),
        sa.Column("random_state", sa.Integer, nullable=False),
        sa.Column("silhouette", sa.Float),
        sa.Column("k_scores", sa.JSON, nullable=False),
        sa.Column("sizes", sa.JSON, nullable=False),
        sa.Column("profiles", sa.JSON, nullable=False),
        sa.Column("model", sa.JSON, nullable=False),
        sa.Column("params", sa.JSON, nullable=False),
    )
    op.create_index("ix_cluster_runs_created_at", "cluster_runs", ["created_at"])
    op.create_table(
        "cluster_assignments",
        sa.Column(
            "run_id",
            sa.String(36),
            sa.ForeignKey(
                "cluster_runs.id", ondelete="CASCADE", name="fk_cluster_assignments_run_id_cluster_runs"
            ),
            primary_key=True,
        ),
        sa.Column("customer_id", sa.String(36), primary_key=True),
        sa.Column("cluster", sa.Integer, nullable=False),
        sa.Column("distance", sa.Float, nullable=False),
    )
    op.create_index("ix_cluster_assignments_customer", "cluster_assignments", ["customer_id"])
    op.create_table(
        "playbooks",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("description", sa.Text),
        sa.Column("tree", sa.JSON, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("source", sa.String(10), nullable=False),
        sa.Column("training", sa.JSON),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("name", name="uq_playbooks_name"),
    )


def downgrade() -> None:
    op.drop_table("playbooks")
    op.drop_table("cluster_assignments")
    op.drop_table("cluster_runs")
