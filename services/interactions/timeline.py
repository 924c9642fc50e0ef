"""The customer timeline: every contact of a customer, newest first, in one indexed range scan.

Every use case that records a contact (an inquiry, a purchase, a refund, a complaint, a survey
answer, a message sent) adds one `interactions` row through `new_interaction`; the details live in
their own tables (`subject_type`/`subject_id`). Pages are keyset-paginated on (occurred_at, id), so
the first page of a customer with 100,000 contacts costs the same as one with ten.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from services.interactions.models import InteractionRow
from shared.contracts.interactions import InteractionRecorded
from shared.errors import InvalidInput

MAX_PAGE = 200


def new_interaction(
    *,
    customer_id: str,
    kind: str,
    channel: str,
    direction: str,
    occurred_at: datetime,
    source_system: str,
    idempotency_key: str | None = None,
    agent_id: str | None = None,
    summary: str | None = None,
    text: str | None = None,
    tags: Iterable[str] = (),
    attributes: dict[str, Any] | None = None,
    subject_type: str | None = None,
    subject_id: str | None = None,
    recorded_at: datetime | None = None,
    interaction_id: str | None = None,
    origin_customer_id: str | None = None,
) -> InteractionRow:
    """A timeline row (not yet added to any session). `customer_id` is the customer's current id;
    `origin_customer_id` the id the contact was recorded for, if that was an id since merged into it
    (an unmerge then gives the contact back to it)."""
    return InteractionRow(
        id=interaction_id or str(uuid.uuid4()),
        customer_id=customer_id,
        origin_customer_id=origin_customer_id or customer_id,
        kind=kind,
        channel=channel,
        direction=direction,
        occurred_at=occurred_at,
        recorded_at=recorded_at or datetime.now(UTC),
        source_system=source_system,
        idempotency_key=idempotency_key,
        agent_id=agent_id,
        summary=summary,
        text=text,
        tags=sorted(set(tags)),
        attributes=attributes or {},
        subject_type=subject_type,
        subject_id=subject_id,
        erased=False,
    )


def recorded_event(row: InteractionRow) -> InteractionRecorded:
    """`interaction_recorded` for a row: what the contact was, not what was said."""
    return InteractionRecorded(
        interaction_id=row.id,
        customer_id=row.customer_id,
        kind=row.kind,
        channel=row.channel,
        direction=row.direction,
        occurred_at=row.occurred_at,
        source_system=row.source_system,
        agent_id=row.agent_id,
        tags=list(row.tags or []),
    )


@dataclass(frozen=True, slots=True)
class TimelineQuery:
    customer_id: str
    kinds: Sequence[str] = ()
    channels: Sequence[str] = ()
    since: datetime | None = None  # inclusive
    until: datetime | None = None  # exclusive
    cursor: str | None = None
    limit: int = 50


def encode_cursor(occurred_at: datetime, row_id: str) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([occurred_at.isoformat(), row_id])).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        at, row_id = orjson.loads(base64.urlsafe_b64decode(padded.encode()))
        moment = datetime.fromisoformat(at)
        if moment.tzinfo is None or not isinstance(row_id, str):
            raise ValueError("bad cursor")
    except (ValueError, TypeError, orjson.JSONDecodeError) as exc:
        raise InvalidInput("query.cursor", "not a cursor this API gave out") from exc
    return moment, row_id


async def page(session: AsyncSession, query: TimelineQuery) -> tuple[list[InteractionRow], str | None]:
    """One page of a customer's timeline, newest first, and the cursor of the next page (or None)."""
    statement = select(InteractionRow).where(InteractionRow.customer_id == query.customer_id)
    if query.kinds:
        statement = statement.where(InteractionRow.kind.in_(list(query.kinds)))
    if query.channels:
        statement = statement.where(InteractionRow.channel.in_(list(query.channels)))
    if query.since is not None:
        statement = statement.where(InteractionRow.occurred_at >= query.since)
    if query.until is not None:
        statement = statement.where(InteractionRow.occurred_at < query.until)
    if query.cursor:
        at, row_id = decode_cursor(query.cursor)
        statement = statement.where(
            tuple_(InteractionRow.occurred_at, InteractionRow.id) < tuple_(at, row_id)
        )
    limit = max(1, min(query.limit, MAX_PAGE))
    rows = list(
        await session.scalars(
            statement.order_by(InteractionRow.occurred_at.desc(), InteractionRow.id.desc()).limit(limit + 1)
        )
    )
    if len(rows) > limit:
        rows = rows[:limit]
        return rows, encode_cursor(rows[-1].occurred_at, rows[-1].id)
    return rows, None
