"""Unit of work: one database transaction per use case, with its events written to the outbox inside it.

    async with uow_factory() as uow:
        customer = await repo.add(uow.session, ...)
        await uow.publish(CustomerRegistered(...))
        await uow.commit()

Nothing is committed unless `commit()` is called; leaving the block otherwise rolls back both the
state change and the events. After a commit the outbox relay is woken so events leave promptly.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.db import insert_rows
from shared.events.envelope import CloudEvent, EventPayload, new_event
from shared.messaging.tables import MessagingTables

_Later = tuple[Callable[[], EventPayload], datetime | None]


class UnitOfWork:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        tables: MessagingTables,
        source: str,
        on_commit: Callable[[], None] | None = None,
    ) -> None:
        self._sessions = sessions
        self.tables = tables
        self.source = source
        self._on_commit = on_commit
        self._session: AsyncSession | None = None
        self._published = 0
        # An outbox row, or (for `publish_later`) how to build the event and its time.
        self._deferred: list[dict[str, Any] | _Later] | None = None

    @property
    def session(self) -> AsyncSession:
        if self._session is None:
            raise RuntimeError("unit of work used outside its `async with` block")
        return self._session

    async def __aenter__(self) -> Self:
        self._session = self._sessions()
        self._published = 0
        self._deferred = None
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        # close() rolls back whatever was not committed and detaches the objects without expiring
        # them, so what a use case loaded stays readable after its block ends.
        session = self.session
        self._session = None
        await session.close()

    def _outbox_row(
        self, payload: EventPayload, time: datetime | None, now: datetime
    ) -> tuple[CloudEvent, dict[str, Any]]:
        event = new_event(payload, source=self.source, time=time)
        row = {
            "event_id": event.id,
            "topic": payload.topic.name,
            "key": event.subject,
            "type": event.type,
            "envelope": event.model_dump(mode="json"),
            "created_at": now,
        }
        return event, row

    async def publish(self, payload: EventPayload, *, time: datetime | None = None) -> CloudEvent:
        """Write the event to the outbox in this transaction; it leaves only if the transaction commits."""
        event, row = self._outbox_row(payload, time, datetime.now(UTC))
        if self._deferred is not None:
            self._deferred.append(row)
        else:
            await self.session.execute(self.tables.outbox.insert().values(**row))
        self._published += 1
        return event

    @contextlib.asynccontextmanager
    async def deferred_publishing(self) -> AsyncIterator[None]:
        """Inside the block, `publish` collects the outbox rows and they are written together when the
        block ends (one statement instead of one each), in the order published. For a consumer's run of
        events, which has no savepoints: if the block raises, nothing is written (the transaction is
        abandoned anyway)."""
        if self._deferred is not None:  # nested: the outer block writes them
            yield
            return
        self._deferred = []
        try:
            yield
            held = self._deferred
        finally:
            self._deferred = None
        now = datetime.now(UTC)
        rows = [
            item if isinstance(item, dict) else self._outbox_row(item[0](), item[1], now)[1] for item in held
        ]
        await insert_rows(self.session, self.tables.outbox, rows)

    def publish_later(self, build: Callable[[], EventPayload], *, time: datetime | None = None) -> None:
        """Inside `deferred_publishing`: the event `build()` returns, built when the block ends — from
        what is known only then (a write-behind ledger's balances) — in its place among the events
        published in the block."""
        if self._deferred is None:
            raise RuntimeError("publish_later is for a deferred_publishing block")
        self._deferred.append((build, time))
        self._published += 1

    async def publish_many(self, payloads: Sequence[EventPayload], *, time: datetime | None = None) -> None:
        """`publish` for many events in one statement (executemany): the same outbox rows, in order."""
        if not payloads:
            return
        now = datetime.now(UTC)
        rows = [self._outbox_row(payload, time, now)[1] for payload in payloads]
        await insert_rows(self.session, self.tables.outbox, rows)
        self._published += len(rows)

    def published_in_bulk(self, count: int) -> None:
        """Outbox rows written by a bulk statement count like `publish` calls: the relay wakes on commit."""
        self._published += count

    async def commit(self) -> None:
        await self.session.commit()
        if self._published and self._on_commit is not None:
            self._on_commit()
        self._published = 0

    async def rollback(self) -> None:
        await self.session.rollback()
        self._published = 0


class UnitOfWorkFactory:
    """Makes units of work for one service's database; wired once in the service's composition root."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        tables: MessagingTables,
        source: str,
    ) -> None:
        self.sessions = sessions
        self.tables = tables
        self.source = source
        self._listeners: list[Callable[[], None]] = []

    def on_commit(self, listener: Callable[[], None]) -> None:
        """Called after every commit that published events (the outbox relay's wake-up)."""
        self._listeners.append(listener)

    def _notify(self) -> None:
        for listener in self._listeners:
            listener()

    def __call__(self) -> UnitOfWork:
        return UnitOfWork(self.sessions, self.tables, self.source, on_commit=self._notify)
