"""Consents (current, history, contact preferences), attribute definitions, households, organisation
contacts and customer notes.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from shared.messaging.tables import BigIntPK

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "consents",
        sa.Column("customer_id", sa.String(36), primary_key=True),
        sa.Column("channel", sa.String(30), primary_key=True),
        sa.Column("purpose", sa.String(40), primary_key=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("source", sa.String(30), nullable=False),
        sa.Column("evidence", sa.Text),
        sa.Column("actor", sa.String(200)),
        sa.Column("changed_at", TS, nullable=False),
    )
    op.create_table(
        "consent_history",
        sa.Column("id", BigIntPK, primary_key=True, autoincrement=True),
        sa.Column("customer_id", sa.String(36), nullable=False),
        sa.Column("channel", sa.String(30), nullable=False),
        sa.Column("purpose", sa.String(40), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("previous_status", sa.String(20)),
        sa.Column("source", sa.String(30), nullable=False),
        sa.Column("evidence", sa.Text),
        sa.Column("actor", sa.String(200)),
        sa.Column("changed_at", TS, nullable=False),
    )
    op.create_index("ix_consent_history_customer_time", "consent_history", ["customer_id", "changed_at"])
    op.create_table(
        "contact_preferences",
        sa.Column("customer_id", sa.String(36), primary_key=True),
        sa.Column("do_not_contact", sa.Boolean, nullable=False),
        sa.Column("preferred_channel", sa.String(30)),
        sa.Column("preferred_language", sa.String(35)),
        sa.Column("quiet_hours_start", sa.Time),
        sa.Column("quiet_hours_end", sa.Time),
        sa.Column("quiet_hours_time_zone", sa.String(64)),
        sa.Column("actor", sa.String(200)),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_table(
        "attribute_definitions",
        sa.Column("name", sa.String(63), primary_key=True),
        sa.Column("type", sa.String(20), nullable=False),
        sa.Column("enum_values", sa.JSON),
        sa.Column("required", sa.Boolean, nullable=False),
        sa.Column("description", sa.Text),
        sa.Column("max_length", sa.Integer),
        sa.Column("min_value", sa.BigInteger),
        sa.Column("max_value", sa.BigInteger),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_table(
        "households",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_table(
        "household_members",
        sa.Column("customer_id", sa.String(36), primary_key=True),
        sa.Column(
            "household_id",
            sa.String(36),
            sa.ForeignKey(
                "households.id", ondelete="CASCADE", name="fk_household_members_household_id_households"
            ),
            nullable=False,
        ),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("joined_at", TS, nullable=False),
    )
    op.create_index("ix_household_members_household_id", "household_members", ["household_id"])
    op.create_table(
        "organisation_contacts",
        sa.Column("organisation_id", sa.String(36), primary_key=True),
        sa.Column("person_id", sa.String(36), primary_key=True),
        sa.Column("role", sa.String(100), nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_index("ix_organisation_contacts_person_id", "organisation_contacts", ["person_id"])
    op.create_table(
        "customer_notes",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("customer_id", sa.String(36), nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("author", sa.String(200), nullable=False),
        sa.Column("pinned", sa.Boolean, nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_index("ix_customer_notes_customer_time", "customer_notes", ["customer_id", "created_at"])


def downgrade() -> None:
    for table in (
        "customer_notes",
        "organisation_contacts",
        "household_members",
        "households",
        "attribute_definitions",
        "contact_preferences",
        "consent_history",
        "consents",
    ):
        op.drop_table(table)
