"""The outbox relay: moves committed events from a service's outbox table to the bus, in order.

Rows are read in commit order (by id), handed to `EventBus.publish` — which returns only once the
broker acknowledged them (or, in embedded mode, every subscriber handled them) — and deleted only
then. A crash between the two republishes the rows; consumers' inboxes drop the duplicates.

On PostgreSQL only one replica of a service relays at a time (a session-level advisory lock), so
per-customer order is kept however many replicas run; the others stand by and take over when the
holder's connection goes away.
"""

from __future__ import annotations

import asyncio
import contextlib
import zlib
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from datetime import datetime

import orjson
from opentelemetry.trace import SpanKind, Status, StatusCode
from sqlalchemy import Text, cast, delete, func, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from shared.events.envelope import CloudEvent
from shared.logging import get_logger
from shared.messaging.bus import EventBus, OutboundMessage
from shared.messaging.consumer import is_transient
from shared.messaging.tables import MessagingTables
from shared.metrics import EVENTS_PUBLISHED
from shared.telemetry import parent_context, telemetry

log = get_logger(__name__)


def _stored_event(envelope: str) -> CloudEvent:
    """An outbox envelope (written by `new_event`, so valid) as a CloudEvent, without validating it
    again: only its time is parsed back."""
    fields = orjson.loads(envelope)
    fields["time"] = datetime.fromisoformat(fields["time"])
    return CloudEvent.model_construct(**fields)


@contextlib.contextmanager
def _publish_spans(service: str, messages: list[OutboundMessage]) -> Iterator[None]:
    """With the service's tracing on, a PRODUCER span per relayed event that carries a trace context:
    a child of the span that wrote the event, covering its hand-over to the bus. Not made current:
    consumers (run inside `publish` in embedded mode) continue the event's own `traceparent`."""
    tel = telemetry(service)
    if tel.provider is None:
        yield
        return
    spans = [
        tel.tracer.start_span(
            f"publish {m.topic}",
            context=parent_context(m.event.traceparent, m.event.tracestate),
            kind=SpanKind.PRODUCER,
            attributes={
                "messaging.system": "crm.outbox",
                "messaging.operation.type": "send",
                "messaging.operation.name": "publish",
                "messaging.destination.name": m.topic,
                "messaging.message.id": m.event.id,
                "cloudevents.event_id": m.event.id,
                "cloudevents.event_type": m.event.type,
            },
        )
        for m in messages
        if m.event.traceparent
    ]
    try:
        yield
    except BaseException as exc:
        for span in spans:
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
        raise
    finally:
        for span in spans:
            span.end()


class OutboxRelay:
    def __init__(
        self,
        *,
        name: str,
        engine: AsyncEngine,
        tables: MessagingTables,
        bus: EventBus,
        batch_size: int = 500,
        poll_interval: float = 0.5,
    ) -> None:
        self.name = name
        self.engine = engine
        self.tables = tables
        self.bus = bus
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.published_total = 0
        self.is_leader = False
        # One batch at a time per relay: `drain()` (tests, shutdown, the CLI) and the background loop
        # would otherwise publish the same rows twice, harmless for consumers but wasted work.
        self._batch_lock = asyncio.Lock()

    def wake(self) -> None:
        """Called after a commit that wrote events: relay now instead of at the next poll."""
        self._wake.set()

    def start(self) -> None:
        if self._task is None:
            self._stopping = False
            self._task = asyncio.create_task(self._run(), name=f"outbox-relay-{self.name}")

    async def stop(self, grace: float = 5.0) -> None:
        """Stop after the batch in flight: a batch published but not yet deleted from the outbox would
        be published again by the next relay (harmless — consumers deduplicate — but avoidable). Cancelled
        if it takes longer than `grace` seconds."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout=grace)
            except TimeoutError:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
            except asyncio.CancelledError:
                self._task.cancel()
                raise
            self._task = None

    async def backlog(self) -> int:
        async with self.engine.connect() as conn:
            count = await conn.scalar(select(func.count()).select_from(self.tables.outbox))
        return int(count or 0)

    async def drain(self, timeout: float = 30.0) -> None:
        """Relay until the outbox is empty (tests and shutdown)."""
        async with asyncio.timeout(timeout):
            while await self.relay_once():
                pass

    async def relay_once(self) -> int:
        """Publish one batch; return how many rows were relayed (0 when the outbox is empty)."""
        async with self._batch_lock:
            return await self._relay_batch()

    async def _relay_batch(self) -> int:
        outbox = self.tables.outbox
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(
                        outbox.c.id,
                        outbox.c.event_id,
                        outbox.c.topic,
                        cast(outbox.c.envelope, Text).label("envelope"),
                    )
                    .order_by(outbox.c.id)
                    .limit(self.batch_size)
                )
            ).all()
        if not rows:
            return 0
        # The envelopes were validated when written (`new_event`) and stored as `model_dump(mode="json")`:
        # rebuilt without validating again (thousands per second go through here).
        messages = [OutboundMessage(topic=r.topic, event=_stored_event(r.envelope)) for r in rows]
        with _publish_spans(self.name, messages):
            await self.bus.publish(messages)
        # Deleted by id *and* event id: SQLite reuses the rowid of a deleted last row, so a relay in
        # another process that published these rows too could otherwise delete a newer event that
        # took one of their ids before it was ever published (seen as a lost purchase in embedded mode).
        async with self.engine.begin() as conn:
            await conn.execute(
                delete(outbox).where(
                    outbox.c.id.in_([r.id for r in rows]),
                    outbox.c.event_id.in_([r.event_id for r in rows]),
                )
            )
        self.published_total += len(rows)
        for topic, count in Counter(m.topic for m in messages).items():
            EVENTS_PUBLISHED.labels(self.name, topic).inc(count)
        return len(rows)

    async def _run(self) -> None:
        backoff = 0.1
        while not self._stopping:
            try:
                async with self._leadership():
                    backoff = 0.1
                    while not self._stopping:
                        self._wake.clear()
                        relayed = await self.relay_once()
                        if relayed < self.batch_size:
                            with contextlib.suppress(TimeoutError):
                                await asyncio.wait_for(self._wake.wait(), self.poll_interval)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning(
                    "outbox_relay_retry", relay=self.name, error=repr(exc), transient=is_transient(exc)
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    @contextlib.asynccontextmanager
    async def _leadership(self) -> AsyncIterator[None]:
        if self.engine.dialect.name != "postgresql":
            self.is_leader = True
            yield
            return
        key = zlib.crc32(f"outbox-relay:{self.name}".encode())
        conn: AsyncConnection
        async with self.engine.connect() as conn:
            while not self._stopping:
                got = await conn.scalar(text("SELECT pg_try_advisory_lock(:k)"), {"k": key})
                await conn.commit()
                if got:
                    break
                self.is_leader = False
                await asyncio.sleep(self.poll_interval * 2)
                await conn.scalar(text("SELECT 1"))  # notice a dead connection promptly
            self.is_leader = True
            try:
                yield
            finally:
                self.is_leader = False
                with contextlib.suppress(Exception):
                    await conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                    await conn.commit()
