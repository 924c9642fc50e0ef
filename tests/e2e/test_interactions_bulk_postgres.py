"""Bulk contacts on PostgreSQL: written by COPY, duplicates found through the array join, and one
outbox row per contact recorded, in the same transaction."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select

from services.interactions import contacts
from services.interactions.app import build
from services.interactions.directory import remember
from services.interactions.models import InteractionRow
from services.interactions.settings import load_settings
from shared.messaging.bus import InProcessBus


def item(customer_id: str, key: str | None, minutes: int) -> dict[str, Any]:
    return {
        "customer_id": customer_id,
        "channel": "web",
        "kind": "web_activity",
        "occurred_at": (datetime.now(UTC) - timedelta(minutes=minutes)).isoformat(),
        "source_system": "web",
        "idempotency_key": key,
        "tags": ["b", "a", "b"],
        "attributes": {"page": "/sale", "seconds": minutes},
    }


async def test_bulk_contacts_on_postgres(pg_database: str) -> None:
    runtime = build(load_settings(database_url=pg_database), InProcessBus())
    await runtime.start()
    await runtime.relay.stop()  # keep the outbox rows to count them
    directory = runtime.app.state.directory
    try:
        ana, ben = str(uuid.uuid4()), str(uuid.uuid4())
        async with runtime.uow() as uow:
            await remember(uow.session, ana)
            await remember(uow.session, ben)
            await uow.commit()
        first = [item(ana if i % 2 else ben, f"k-{i}", i) for i in range(300)] + [item(ana, None, 1)]
        result = await contacts.record_bulk(runtime.uow(), directory, first)
        assert (result.created, result.duplicates, result.rejected) == (301, 0, 0)
        again = [item(ana, f"k-{i}", i) for i in range(250, 350)]
        result = await contacts.record_bulk(runtime.uow(), directory, again)
        assert (result.created, result.duplicates) == (50, 50)
        assert [r.status for r in result.items[:50]] == ["duplicate"] * 50
        async with runtime.sessions() as session:
            rows = await session.scalar(select(func.count()).select_from(InteractionRow))
            outbox = await session.scalar(select(func.count()).select_from(runtime.tables.outbox))
            sample = await session.scalar(
                select(InteractionRow).where(InteractionRow.idempotency_key == "k-7")
            )
        assert rows == outbox == 351
        assert sample is not None
        assert sample.tags == ["a", "b"]
        assert sample.attributes == {"page": "/sale", "seconds": 7}
        assert sample.occurred_at.tzinfo is not None
    finally:
        await runtime.stop()
