"""A miniature service for testing the messaging kernel: one producer, one consumer, real tables.

The producer writes a `notes` row and a `NoteWritten` event in one unit of work; the consumer's
handler adds the note's amount to a per-subject `totals` row — an effect that would visibly double
if an event were applied twice, and visibly miss if one were lost.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import BigInteger, Column, Integer, MetaData, String, Table, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.db import create_engine, new_metadata, session_factory
from shared.events.envelope import CloudEvent, EventPayload, Topic
from shared.messaging.consumer import EventConsumer
from shared.messaging.tables import MessagingTables, messaging_tables
from shared.uow import UnitOfWork, UnitOfWorkFactory


def make_event_class(run_id: str, partitions: int = 3) -> type[EventPayload]:
    """A fresh event type on a fresh topic, so runs against a long-lived broker never see each other."""
    topic = Topic(
        name=f"crm.test.notes.{run_id}", owner="tests", description="test notes", partitions=partitions
    )
    attrs: dict[str, Any] = {
        "__annotations__": {"note_id": str, "customer_id": str, "amount": int, "poison": bool},
        "event_type": f"crm.test.note_written_{run_id}",
        "topic": topic,
        "poison": False,
        "__module__": __name__,
    }
    attrs["__annotations__"].update({"event_type": ClassVar[str], "topic": ClassVar[Topic]})
    return type(f"NoteWritten_{run_id}", (EventPayload,), attrs)


@dataclass
class Side:
    """One side's database: engine, tables, unit-of-work factory."""

    engine: AsyncEngine
    metadata: MetaData
    messaging: MessagingTables
    notes: Table
    totals: Table
    uow: UnitOfWorkFactory

    async def create_all(self) -> None:
        async with self.engine.begin() as conn:
            await conn.run_sync(self.metadata.create_all)

    async def totals_by_subject(self) -> dict[str, tuple[int, int]]:
        async with self.engine.connect() as conn:
            rows = (await conn.execute(select(self.totals))).all()
        return {r.customer_id: (r.amount, r.count) for r in rows}

    async def outbox_count(self) -> int:
        async with self.engine.connect() as conn:
            return len((await conn.execute(select(self.messaging.outbox.c.id))).all())


def make_side(url: str, source: str) -> Side:
    metadata = new_metadata()
    messaging = messaging_tables(metadata)
    notes = Table("notes", metadata, Column("id", String(36), primary_key=True), Column("amount", Integer))
    totals = Table(
        "totals",
        metadata,
        Column("customer_id", String(36), primary_key=True),
        Column("amount", BigInteger, nullable=False),
        Column("count", Integer, nullable=False),
    )
    engine = create_engine(url, pool_size=5)
    uow = UnitOfWorkFactory(session_factory(engine), messaging, source=source)
    return Side(engine, metadata, messaging, notes, totals, uow)


async def write_note(
    side: Side,
    event_class: type[EventPayload],
    customer_id: str,
    amount: int,
    *,
    poison: bool = False,
    commit: bool = True,
) -> str:
    note_id = str(uuid.uuid4())
    async with side.uow() as uow:
        await uow.session.execute(side.notes.insert().values(id=note_id, amount=amount))
        await uow.publish(event_class(note_id=note_id, customer_id=customer_id, amount=amount, poison=poison))
        if commit:
            await uow.commit()
    return note_id


class Poisoned(ValueError):
    """What the test handler raises for an event marked poison: a permanent failure."""


def make_consumer(
    side: Side,
    event_class: type[EventPayload],
    group: str,
    *,
    before: Callable[[Any], None] | None = None,
    poison_enabled: Callable[[], bool] = lambda: True,
) -> EventConsumer:
    consumer = EventConsumer(group, side.uow, max_attempts=2)

    @consumer.on(event_class)
    async def add(uow: UnitOfWork, note: Any, _event: CloudEvent) -> None:
        if before is not None:
            before(note)
        if note.poison and poison_enabled():
            raise Poisoned(f"note {note.note_id} is poison")
        dialect = uow.session.bind.dialect.name if uow.session.bind is not None else "sqlite"
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        stmt = insert(side.totals).values(customer_id=note.customer_id, amount=note.amount, count=1)
        await uow.session.execute(
            stmt.on_conflict_do_update(
                index_elements=[side.totals.c.customer_id],
                set_={"amount": side.totals.c.amount + note.amount, "count": side.totals.c.count + 1},
            )
        )

    return consumer


def now() -> datetime:
    return datetime.now(UTC)
