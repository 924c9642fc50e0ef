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
import functools
import re
import warnings
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self

from sqlalchemy import JSON, Select, Text, cast, func, literal, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.db import insert_rows
from shared.events.envelope import CloudEvent, EventPayload, new_event
from shared.messaging.tables import MessagingTables

_Later = tuple[Callable[[], EventPayload], datetime | None]
# `publish_select`'s placeholders in an envelope's JSON text: a NUL-delimited name, as orjson writes it.
_PLACEHOLDER = re.compile(r'"\\u0000([A-Za-z_][A-Za-z0-9_]*)\\u0000"')
_EVENT_ID = "__event_id"
SELECT_CHUNK = 5_000  # rows per `publish_many` where `publish_select` cannot stay in the database


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
        self, payload: EventPayload, time: datetime | None, now: datetime, *, trusted: bool = False
    ) -> tuple[CloudEvent, dict[str, Any]]:
        event = new_event(payload, source=self.source, time=time, trusted=trusted)
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

    async def publish_many(
        self, payloads: Sequence[EventPayload], *, time: datetime | None = None, trusted: bool = False
    ) -> None:
        """`publish` for many events in one statement (executemany): the same outbox rows, in order.
        `trusted`: the payloads were validated when built, so their envelopes are not validated again
        (see `new_event`)."""
        if not payloads:
            return
        now = datetime.now(UTC)
        rows = [self._outbox_row(payload, time, now, trusted=trusted)[1] for payload in payloads]
        await insert_rows(self.session, self.tables.outbox, rows)
        self._published += len(rows)

    async def publish_select(
        self,
        payload_type: type[EventPayload],
        rows: Select[Any],
        constants: Mapping[str, Any],
        *,
        time: datetime | None = None,
    ) -> int:
        """One `payload_type` event per row of `rows`, whose columns are named after the payload's
        fields that differ between the events (strings, integers or NULL); `constants` holds the others.
        Returns how many were published.

        On PostgreSQL the events never come into Python: one envelope is made here the ordinary way
        (`new_event`, so its attributes, trace context and data's encoding are the ones `publish`
        writes), with a placeholder for each varying value and for the event id; its JSON text becomes
        a concatenation in which each placeholder is the row's value as JSON, and one INSERT … SELECT
        writes every outbox row (ids from `gen_random_uuid`). A set-based change of a million rows —
        a first scoring, a segment's backfill — publishes its events in seconds and in no memory.
        Elsewhere the rows are read and published by `publish_many`, a chunk at a time."""
        varying = list(rows.selected_columns.keys())
        unknown = (set(varying) | set(constants)) - set(payload_type.model_fields)
        if unknown or set(varying) & set(constants):
            raise ValueError(f"{payload_type.__name__}: columns {varying} and constants {list(constants)}")
        session = self.session
        if session.bind is None or session.bind.dialect.name != "postgresql":
            count = 0
            result = await session.execute(rows)
            while chunk := result.mappings().fetchmany(SELECT_CHUNK):
                await self.publish_many([payload_type(**constants, **row) for row in chunk], time=time)
                count += len(chunk)
            return count
        marks = {name: f"\x00{name}\x00" for name in varying}
        with warnings.catch_warnings():  # an integer field holding its placeholder string
            warnings.simplefilter("ignore")
            fields: dict[str, Any] = {**constants, **marks}
            template = payload_type.model_construct(**fields)
            event = new_event(
                template, source=self.source, time=time, event_id=f"\x00{_EVENT_ID}\x00", trusted=True
            )
            import orjson

            text = orjson.dumps(event.model_dump(mode="json")).decode()
        source = select(
            func.gen_random_uuid().cast(Text).label(_EVENT_ID), *rows.subquery("rows").c
        ).subquery("events")
        pieces = _PLACEHOLDER.split(text)
        parts: list[Any] = []
        for i, piece in enumerate(pieces):
            if i % 2 == 0:
                if piece:
                    parts.append(literal(piece, Text))
            else:
                parts.append(func.coalesce(cast(func.to_json(source.c[piece]), Text), "null"))
        envelope = functools.reduce(lambda a, b: a.op("||")(b), parts)
        subject = payload_type.subject_field
        key = source.c[subject] if subject in marks else literal(event.subject, Text)
        outbox = self.tables.outbox
        statement = outbox.insert().from_select(
            ["event_id", "topic", "key", "type", "envelope", "created_at"],
            select(
                source.c[_EVENT_ID],
                literal(payload_type.topic.name, Text),
                key,
                literal(event.type, Text),
                cast(envelope, JSON),
                literal(datetime.now(UTC), outbox.c.created_at.type),
            ),
        )
        count = (await session.execute(statement)).rowcount  # type: ignore[attr-defined]
        self._published += count
        return int(count)

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

    def notify_committed(self) -> None:
        """Events were committed to the outbox outside a unit of work (one autocommit statement that
        changes state and writes its events): wake the listeners as a commit would."""
        self._notify()

    def __call__(self) -> UnitOfWork:
        return UnitOfWork(self.sessions, self.tables, self.source, on_commit=self._notify)
