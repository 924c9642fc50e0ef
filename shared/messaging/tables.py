"""The messaging tables every service's database holds: outbox, inbox and (embedded mode) dead letters.

They are declared on the service's own metadata, so each service migrates them with its own
Alembic history; `create_messaging_tables` is the frozen DDL its first migration runs.
"""

from __future__ import annotations

from dataclasses import dataclass

from alembic import op
from sqlalchemy import JSON, BigInteger, Column, Integer, MetaData, String, Table, Text

from shared.db import UTCDateTime

# Integer primary keys autoincrement on SQLite only when declared INTEGER.
BigIntPK = BigInteger().with_variant(Integer(), "sqlite")


@dataclass(frozen=True, slots=True)
class MessagingTables:
    outbox: Table
    inbox: Table
    dead_letters: Table


def _outbox_columns() -> list[Column[object]]:
    return [
        Column("id", BigIntPK, primary_key=True, autoincrement=True),
        Column("event_id", String(64), nullable=False, unique=True),
        Column("topic", String(200), nullable=False),
        Column("key", String(200), nullable=True),
        Column("type", String(200), nullable=False),
        Column("envelope", JSON, nullable=False),
        Column("created_at", UTCDateTime(), nullable=False),
    ]


def _inbox_columns() -> list[Column[object]]:
    return [
        Column("consumer_group", String(200), primary_key=True),
        Column("event_id", String(64), primary_key=True),
        Column("event_type", String(200), nullable=False),
        Column("handled_at", UTCDateTime(), nullable=False),
    ]


def _dead_letter_columns() -> list[Column[object]]:
    return [
        Column("id", BigIntPK, primary_key=True, autoincrement=True),
        Column("consumer_group", String(200), nullable=False),
        Column("topic", String(200), nullable=False),
        Column("event_id", String(64), nullable=False),
        Column("event_type", String(200), nullable=False),
        Column("envelope", JSON, nullable=False),
        Column("error", Text, nullable=False),
        Column("attempts", Integer, nullable=False),
        Column("failed_at", UTCDateTime(), nullable=False),
        Column("replayed_at", UTCDateTime(), nullable=True),
    ]


def messaging_tables(metadata: MetaData) -> MessagingTables:
    return MessagingTables(
        outbox=Table("outbox", metadata, *_outbox_columns()),
        inbox=Table("inbox", metadata, *_inbox_columns()),
        dead_letters=Table("dead_letters", metadata, *_dead_letter_columns()),
    )


def create_messaging_tables() -> None:
    """DDL for a service's first migration. Frozen: later changes go in new migrations."""
    op.create_table("outbox", *_outbox_columns())
    op.create_table("inbox", *_inbox_columns())
    op.create_table("dead_letters", *_dead_letter_columns())


def drop_messaging_tables() -> None:
    for name in ("dead_letters", "inbox", "outbox"):
        op.drop_table(name)
