"""`Idempotency-Key` for HTTP writes: the same key and payload returns the first response; the same key
with another payload is a 409.

The key is claimed by inserting its row in the *same* transaction as the write it protects, so the
write and the stored response commit together or not at all. A concurrent request with the same key
blocks on the row's unique index until the first commits (PostgreSQL) and then replays its answer. A
request that fails (a 4xx problem, a crash) stores nothing: retrying it with the same key is allowed.

    async with uow:
        outcome = await idempotent(uow.session, IDEMPOTENCY, scope="redeem", key=key, payload=body,
                                   action=lambda: do_redeem(uow, body))
        await uow.commit()
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
from fastapi import Header
from sqlalchemy import JSON, Column, DateTime, Integer, MetaData, String, Table, and_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from shared.errors import Conflict, InvalidInput

MAX_KEY_LENGTH = 200

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        description=(
            "Makes the write safe to retry: the same key with the same payload returns the first "
            "response (status and body) without doing anything again; the same key with a different "
            "payload is refused with 409. Keys are scoped to the operation. Use a fresh UUID per "
            "logical write."
        ),
        examples=["5f1c2b7e-0e2a-4c1e-9a57-2b8f0d3c4e11"],
    ),
]


def idempotency_table(metadata: MetaData) -> Table:
    return Table(
        "idempotency_keys",
        metadata,
        Column("scope", String(120), primary_key=True),
        Column("key", String(MAX_KEY_LENGTH), primary_key=True),
        Column("request_hash", String(64), nullable=False),
        Column("status_code", Integer, nullable=False),
        Column("response", JSON, nullable=True),
        Column("created_at", DateTime(timezone=True), nullable=False),
    )


@dataclass(frozen=True, slots=True)
class Outcome:
    status_code: int
    body: Any
    replayed: bool


def request_hash(payload: Any) -> str:
    return hashlib.sha256(orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)).hexdigest()


async def idempotent(
    session: AsyncSession,
    table: Table,
    *,
    scope: str,
    key: str | None,
    payload: Any,
    action: Callable[[], Awaitable[tuple[int, Any]]],
) -> Outcome:
    """Run `action` once per (scope, key) inside the caller's transaction (the caller commits).

    `action` returns the status code and the JSON-ready body to answer with and to store."""
    if key is None:
        status, body = await action()
        return Outcome(status, body, replayed=False)
    if not key or len(key) > MAX_KEY_LENGTH:
        raise InvalidInput("header.Idempotency-Key", f"must be 1 to {MAX_KEY_LENGTH} characters")
    digest = request_hash(payload)
    dialect = session.bind.dialect.name if session.bind is not None else "sqlite"
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    claimed = await session.execute(
        insert(table)
        .values(
            scope=scope,
            key=key,
            request_hash=digest,
            status_code=0,
            response=None,
            created_at=datetime.now(UTC),
        )
        .on_conflict_do_nothing()
        .returning(table.c.key)
    )
    if claimed.first() is None:
        row = (
            await session.execute(select(table).where(and_(table.c.scope == scope, table.c.key == key)))
        ).one()
        if row.request_hash != digest:
            raise Conflict(
                f"Idempotency-Key {key!r} was already used for a different {scope} request",
                errors=[],
                idempotency_key=key,
            )
        return Outcome(row.status_code, row.response, replayed=True)
    status, body = await action()
    await session.execute(
        update(table)
        .where(and_(table.c.scope == scope, table.c.key == key))
        .values(status_code=status, response=body)
    )
    return Outcome(status, body, replayed=False)
