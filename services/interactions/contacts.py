"""Recording contacts (one, or thousands per request) and reading the customer timeline."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, cast

from pydantic import ValidationError
from sqlalchemy import String, Table, bindparam, select, text, tuple_
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.interactions import timeline
from services.interactions.directory import CustomerDirectory
from services.interactions.models import InteractionRow
from services.interactions.schemas import BulkItemResult, BulkResult, InteractionCreate
from shared.contracts.interactions import InteractionRecorded
from shared.db import insert_rows
from shared.errors import Conflict, DomainError, Gone, InvalidInput, NotFound
from shared.uow import UnitOfWork

INTERACTIONS = cast(Table, InteractionRow.__table__)


async def resolve_customer(
    session: AsyncSession, directory: CustomerDirectory, data: InteractionCreate, prefix: str = "body"
) -> str:
    """The current id of the customer the contact is with (merges followed); a clear 4xx naming the
    field when there is none."""
    if data.customer_id is not None:
        found = await directory.lookup(session, data.customer_id)
        if found is None:
            raise InvalidInput(f"{prefix}.customer_id", f"unknown customer {data.customer_id}")
        if found.erased:
            raise InvalidInput(f"{prefix}.customer_id", f"customer {data.customer_id} was erased")
        return found.customer_id
    assert data.customer is not None
    for kind in ("email", "phone", "card"):
        value = getattr(data.customer, kind)
        if value:
            found = await directory.by_identifier(session, kind, value, f"{prefix}.customer.{kind}")
            return found.customer_id
    raise InvalidInput(f"{prefix}.customer", "give exactly one of email, phone, card")


def _row(data: InteractionCreate, customer_id: str) -> InteractionRow:
    return timeline.new_interaction(
        customer_id=customer_id,
        kind=data.kind.value,
        channel=data.channel.value,
        direction=data.direction.value,
        occurred_at=data.occurred_at,
        source_system=data.source_system,
        idempotency_key=data.idempotency_key,
        agent_id=data.agent_id,
        summary=data.summary,
        text=data.text,
        tags=data.tags,
        attributes=data.attributes,
        origin_customer_id=data.customer_id,
    )


def _values(data: InteractionCreate, customer_id: str, recorded_at: datetime) -> dict[str, Any]:
    """`_row` as the column values of an insert (thousands per request: no ORM objects)."""
    return {
        "id": str(uuid.uuid4()),
        "customer_id": customer_id,
        "origin_customer_id": data.customer_id or customer_id,
        "kind": data.kind.value,
        "channel": data.channel.value,
        "direction": data.direction.value,
        "occurred_at": data.occurred_at,
        "recorded_at": recorded_at,
        "source_system": data.source_system,
        "idempotency_key": data.idempotency_key,
        "agent_id": data.agent_id,
        "summary": data.summary,
        "text": data.text,
        "tags": sorted(set(data.tags)),
        "attributes": data.attributes,
        "subject_type": None,
        "subject_id": None,
        "erased": False,
    }


def _recorded(values: dict[str, Any]) -> InteractionRecorded:
    return InteractionRecorded(
        interaction_id=values["id"],
        customer_id=values["customer_id"],
        kind=values["kind"],
        channel=values["channel"],
        direction=values["direction"],
        occurred_at=values["occurred_at"],
        source_system=values["source_system"],
        agent_id=values["agent_id"],
        tags=values["tags"],
    )


async def _stored_keys(
    session: AsyncSession, pairs: list[tuple[str, str | None]]
) -> dict[tuple[str, str], str]:
    """The contacts already stored under these (source system, idempotency key) pairs, by pair."""
    found: dict[tuple[str, str], str] = {}
    if not pairs:
        return found
    if session.bind is not None and session.bind.dialect.name == "postgresql":
        # One index probe per pair through a join on two arrays: a thousand-way OR costs more to plan
        # than to run.
        rows = await session.execute(
            text(
                "SELECT i.source_system, i.idempotency_key, i.id FROM unnest(:systems, :keys) AS k(s, key) "
                "JOIN interactions AS i ON i.source_system = k.s AND i.idempotency_key = k.key"
            ).bindparams(bindparam("systems", type_=ARRAY(String)), bindparam("keys", type_=ARRAY(String))),
            {"systems": [s for s, _ in pairs], "keys": [k for _, k in pairs]},
        )
        found.update({(str(system), str(key)): str(row_id) for system, key, row_id in rows})
        return found
    for start in range(0, len(pairs), 500):
        batch = pairs[start : start + 500]
        rows = await session.execute(
            select(InteractionRow.source_system, InteractionRow.idempotency_key, InteractionRow.id).where(
                tuple_(InteractionRow.source_system, InteractionRow.idempotency_key).in_(batch)
            )
        )
        found.update({(str(system), str(key)): str(row_id) for system, key, row_id in rows})
    return found


async def _by_key(session: AsyncSession, source_system: str, key: str) -> InteractionRow | None:
    return cast(
        InteractionRow | None,
        await session.scalar(
            select(InteractionRow).where(
                InteractionRow.source_system == source_system, InteractionRow.idempotency_key == key
            )
        ),
    )


async def record(
    uow: UnitOfWork, directory: CustomerDirectory, data: InteractionCreate
) -> tuple[InteractionRow, bool]:
    """Store a contact and publish `interaction_recorded`. Returns (row, created): the same
    idempotency key again returns the contact recorded the first time."""
    async with uow:
        session = uow.session
        if data.idempotency_key is not None:
            existing = await _by_key(session, data.source_system, data.idempotency_key)
            if existing is not None:
                return existing, False
        row = _row(data, await resolve_customer(session, directory, data))
        session.add(row)
        try:
            await session.flush()
        except IntegrityError:
            await uow.rollback()  # the same key, recorded concurrently: that one won
            if data.idempotency_key is not None:
                existing = await _by_key(session, data.source_system, data.idempotency_key)
                if existing is not None:
                    return existing, False
            raise
        await uow.publish(timeline.recorded_event(row))
        await uow.commit()
    return row, True


def _field(loc: Sequence[Any], index: int) -> str:
    return ".".join(["body", "items", str(index), *map(str, loc)])


async def record_bulk(
    uow: UnitOfWork, directory: CustomerDirectory, items: list[dict[str, Any]]
) -> BulkResult:
    """Many contacts in one transaction. Each item is validated and resolved on its own: a bad one is
    reported with its index, field and reason and the others are recorded; an idempotency key seen
    before (or earlier in the same request) makes a duplicate, not a second contact."""
    results: list[BulkItemResult | None] = [None] * len(items)
    valid: list[tuple[int, InteractionCreate]] = []
    for index, raw in enumerate(items):
        try:
            valid.append((index, InteractionCreate.model_validate(raw)))
        except ValidationError as exc:
            errors = [{"field": _field(e["loc"], index), "message": e["msg"]} for e in exc.errors()]
            results[index] = BulkItemResult(index=index, status="rejected", errors=errors)
    async with uow:
        session = uow.session
        # Idempotency: keys stored before, and keys repeated within this request.
        keyed = {(d.source_system, d.idempotency_key) for _, d in valid if d.idempotency_key is not None}
        stored: dict[tuple[str, str], str] = {}
        stored.update(await _stored_keys(session, sorted(keyed)))
        # Customers: the local copy in one query, identity for the rest.
        known = await directory.known_roots(session, [d.customer_id for _, d in valid if d.customer_id])
        rows: list[dict[str, Any]] = []
        events: list[InteractionRecorded] = []
        recorded_at = datetime.now(UTC)
        for index, data in valid:
            key = (data.source_system, data.idempotency_key) if data.idempotency_key is not None else None
            if key is not None and key in stored:
                results[index] = BulkItemResult(index=index, status="duplicate", id=stored[key])
                continue
            try:
                lookup = known.get(data.customer_id) if data.customer_id is not None else None
                if lookup is not None and not lookup.erased:
                    customer_id = lookup.customer_id
                else:
                    customer_id = await resolve_customer(
                        session, directory, data, prefix=f"body.items.{index}"
                    )
            except DomainError as exc:
                errors = [{"field": e.field, "message": e.message} for e in exc.errors] or [
                    {"field": f"body.items.{index}", "message": exc.detail}
                ]
                results[index] = BulkItemResult(index=index, status="rejected", errors=errors)
                continue
            row = _values(data, customer_id, recorded_at)
            if key is not None:
                stored[key] = row["id"]
            rows.append(row)
            events.append(_recorded(row))
            results[index] = BulkItemResult(index=index, status="created", id=row["id"])
        if rows:
            try:
                await insert_rows(session, INTERACTIONS, rows)
            except IntegrityError as exc:
                raise Conflict(
                    "another request recorded some of these idempotency keys at the same moment: send "
                    "the batch again (those contacts will be reported as duplicates)"
                ) from exc
            await uow.publish_many(events)
        await uow.commit()
    return BulkResult.of(results)


async def get(uow: UnitOfWork, interaction_id: str) -> InteractionRow:
    async with uow:
        row = await uow.session.get(InteractionRow, interaction_id)
    if row is None:
        raise NotFound(f"interaction {interaction_id} does not exist", interaction_id=interaction_id)
    return row


async def customer_timeline(
    uow: UnitOfWork, directory: CustomerDirectory, query: timeline.TimelineQuery
) -> tuple[str, list[InteractionRow], str | None]:
    """(the customer's current id, a page of its timeline, the next cursor)."""
    async with uow:
        found = await directory.lookup(uow.session, query.customer_id)
        if found is None:
            raise NotFound(f"customer {query.customer_id} does not exist", customer_id=query.customer_id)
        if found.erased:
            raise Gone(f"customer {query.customer_id} was erased")
        rows, cursor = await timeline.page(
            uow.session,
            timeline.TimelineQuery(
                customer_id=found.customer_id,
                kinds=query.kinds,
                channels=query.channels,
                since=query.since,
                until=query.until,
                cursor=query.cursor,
                limit=query.limit,
            ),
        )
        await uow.commit()  # the lookup may have remembered a customer
    return found.customer_id, rows, cursor
