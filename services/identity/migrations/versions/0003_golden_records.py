"""Golden records: source records, identifiers, blocking and search keys, merges, reviews, audit, models.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from shared.messaging.tables import BigIntPK

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("customers") as batch:
        batch.add_column(sa.Column("birth_date", sa.Date))
        batch.add_column(sa.Column("gender", sa.String(20)))
        batch.add_column(sa.Column("national_id", sa.String(64)))
        batch.add_column(sa.Column("branch_id", sa.String(64)))
        batch.add_column(sa.Column("addresses", sa.JSON, nullable=False, server_default="[]"))
        batch.add_column(sa.Column("external_ids", sa.JSON, nullable=False, server_default="{}"))
        batch.add_column(sa.Column("attributes", sa.JSON, nullable=False, server_default="{}"))
        batch.add_column(sa.Column("provenance", sa.JSON, nullable=False, server_default="{}"))
        batch.add_column(sa.Column("merged_into", sa.String(36)))
        batch.add_column(sa.Column("erased_at", TS))
    op.create_index("ix_customers_merged_into", "customers", ["merged_into"])

    op.create_table(
        "source_records",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("customer_id", sa.String(36), nullable=False),
        sa.Column("origin_customer_id", sa.String(36), nullable=False),
        sa.Column("source_system", sa.String(100), nullable=False),
        sa.Column("source_id", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("data", sa.JSON, nullable=False),
        sa.Column("match", sa.JSON, nullable=False),
        sa.Column("trust", sa.Integer, nullable=False),
        sa.Column("verified", sa.JSON, nullable=False),
        sa.Column("observed_at", TS, nullable=False),
        sa.Column("received_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.UniqueConstraint("source_system", "source_id", name="uq_source_records_source_system_source_id"),
    )
    op.create_index("ix_source_records_customer_id", "source_records", ["customer_id"])
    op.create_index("ix_source_records_origin_customer_id", "source_records", ["origin_customer_id"])

    op.create_table(
        "identifiers",
        sa.Column("id", BigIntPK, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(120), nullable=False),
        sa.Column("value", sa.String(320), nullable=False),
        sa.Column("customer_id", sa.String(36), nullable=False),
        sa.Column("source_record_id", sa.String(36), nullable=False),
    )
    op.create_index("ix_identifiers_kind_value", "identifiers", ["kind", "value"])
    op.create_index("ix_identifiers_customer_id", "identifiers", ["customer_id"])
    op.create_index("ix_identifiers_source_record_id", "identifiers", ["source_record_id"])

    for table in ("blocking_keys", "search_keys"):
        op.create_table(
            table,
            sa.Column("key", sa.String(160), primary_key=True),
            sa.Column("source_record_id", sa.String(36), primary_key=True),
            sa.Column("customer_id", sa.String(36), nullable=False),
        )
        op.create_index(f"ix_{table}_source_record_id", table, ["source_record_id"])
        op.create_index(f"ix_{table}_customer_id", table, ["customer_id"])

    op.create_table(
        "merges",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("survivor_id", sa.String(36), nullable=False),
        sa.Column("absorbed_id", sa.String(36), nullable=False),
        sa.Column("method", sa.String(20), nullable=False),
        sa.Column("score", sa.Float),
        sa.Column("evidence", sa.JSON, nullable=False),
        sa.Column("actor", sa.String(200)),
        sa.Column("reason", sa.Text),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("undone_at", TS),
        sa.Column("undone_by", sa.String(200)),
    )
    op.create_index("ix_merges_survivor_id", "merges", ["survivor_id"])
    op.create_index("ix_merges_absorbed_id", "merges", ["absorbed_id"])

    op.create_table(
        "match_reviews",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("customer_id", sa.String(36), nullable=False),
        sa.Column("candidate_id", sa.String(36), nullable=False),
        sa.Column("source_record_id", sa.String(36)),
        sa.Column("probability", sa.Float, nullable=False),
        sa.Column("score", sa.Float, nullable=False),
        sa.Column("evidence", sa.JSON, nullable=False),
        sa.Column("reason", sa.String(200), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("decided_at", TS),
        sa.Column("decided_by", sa.String(200)),
        sa.Column("decision_reason", sa.Text),
    )
    op.create_index("ix_match_reviews_customer_id", "match_reviews", ["customer_id"])
    op.create_index("ix_match_reviews_candidate_id", "match_reviews", ["candidate_id"])
    op.create_index("ix_match_reviews_status", "match_reviews", ["status"])

    op.create_table(
        "profile_changes",
        sa.Column("id", BigIntPK, primary_key=True, autoincrement=True),
        sa.Column("customer_id", sa.String(36), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("cause", sa.String(40), nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("before", sa.JSON, nullable=False),
        sa.Column("after", sa.JSON, nullable=False),
        sa.Column("changed_at", TS, nullable=False),
    )
    op.create_index("ix_profile_changes_customer_id", "profile_changes", ["customer_id"])

    op.create_table(
        "match_models",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("origin", sa.String(40), nullable=False),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("model", sa.JSON, nullable=False),
        sa.Column("notes", sa.Text),
        sa.Column("created_at", TS, nullable=False),
    )


def downgrade() -> None:
    for table in (
        "match_models",
        "profile_changes",
        "match_reviews",
        "merges",
        "search_keys",
        "blocking_keys",
        "identifiers",
        "source_records",
    ):
        op.drop_table(table)
    op.drop_index("ix_customers_merged_into", "customers")
    with op.batch_alter_table("customers") as batch:
        for column in (
            "erased_at",
            "merged_into",
            "provenance",
            "attributes",
            "external_ids",
            "addresses",
            "branch_id",
            "national_id",
            "gender",
            "birth_date",
        ):
            batch.drop_column(column)
