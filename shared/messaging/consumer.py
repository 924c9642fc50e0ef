"""Event consumers: handle a batch of events in one transaction, exactly once in effect.

A consumer belongs to one service (its consumer group) and handles events with small handler
functions registered per event class. `handle_batch` is what both bus backends call:

1. one transaction for the batch; the inbox rows (consumer group, event id) are inserted first
   with ON CONFLICT DO NOTHING, so an event already handled — a redelivery — is skipped;
2. optimistically, the new events are handled one after the other in that transaction with no
   savepoints (two statements fewer per event — a quarter of a typical handler's round trips);
3. if a handler fails permanently (bad data, a bug), that whole attempt is rolled back and the
   batch is handled again with each event inside its own savepoint: the failing handler rolls back
   only its own changes and its inbox row, and is returned as a dead letter so the rest of the
   partition keeps flowing (a batch of one event goes straight to this mode);
4. a transient failure (database or network unavailable) aborts the whole batch: nothing is
   committed and the caller retries later, so nothing is lost.

Handlers that catch a database error themselves must do so inside their own savepoint
(`session.begin_nested()`), as they must in the isolated mode too (PostgreSQL refuses every further
statement of a transaction after an error, a savepoint release included).

A handler may also be registered for several events at once (`on_many`): in the optimistic mode, a
run of consecutive new events of that type is handed over in one call, so the handler can do set-based
work (one multi-row INSERT, one re-evaluation of every customer touched) instead of the same statements
once per event. Consecutive only: events of other types between them keep their place in the order.
A lone event, and every event in the isolated mode, goes through the one-event handler, so a poison
event is still dead-lettered on its own.

The caller commits the source position (Kafka offset, outbox row) only after this returns.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from opentelemetry.trace import SpanKind, Status, StatusCode
from pydantic import ValidationError
from sqlalchemy import Table, delete, select
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from shared.context import request_id_var
from shared.errors import database_unavailable, sqlstate
from shared.events.envelope import CloudEvent, EventPayload
from shared.logging import get_logger
from shared.metrics import BATCH_ISOLATION_FALLBACKS, EVENTS_HANDLED
from shared.telemetry import event_span, telemetry
from shared.uow import UnitOfWork, UnitOfWorkFactory

log = get_logger(__name__)

P = TypeVar("P", bound=EventPayload)
Handler = Callable[[UnitOfWork, P, CloudEvent], Awaitable[None]]
BatchHandler = Callable[[UnitOfWork, list[P], list[CloudEvent]], Awaitable[None]]


class _HandlerFailed(Exception):
    """A handler failed permanently in the optimistic mode: redo the batch one savepoint per event."""


class TransientError(Exception):
    """Raise from a handler when a failure may pass by itself: retried, never dead-lettered."""


TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    TransientError,
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    sa_exc.DisconnectionError,
    sa_exc.TimeoutError,
    ConnectionError,
    TimeoutError,
    OSError,
)


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, TRANSIENT_ERRORS) or database_unavailable(exc):
        return True
    return sqlstate(exc) in {"40001", "40P01"}  # serialization failure, deadlock: try again


@dataclass(frozen=True, slots=True)
class Delivery:
    """An event as delivered, with where it came from (for dead-letter headers)."""

    event: CloudEvent
    topic: str
    partition: int | None = None
    offset: int | None = None


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """An event a consumer could not handle after its attempts, with the reason."""

    delivery: Delivery
    consumer_group: str
    error: str
    error_type: str
    attempts: int
    failed_at: datetime


@dataclass(slots=True)
class _Registration(Generic[P]):
    payload_class: type[P]
    handler: Handler[P]
    batch: BatchHandler[P] | None = None


class EventConsumer:
    """One service's consumer group: which events it handles and how."""

    def __init__(
        self,
        group: str,
        uow_factory: UnitOfWorkFactory,
        *,
        max_attempts: int = 3,
        service: str | None = None,
        wants: Callable[[CloudEvent], bool] | None = None,
    ) -> None:
        self.group = group
        # An optional cheap test, before any transaction: an event it declines is passed over like an
        # event of a type with no handler (no inbox row, no handler call) — for a handler that would
        # do nothing with it, decided from state the caller keeps in memory.
        self.wants = wants
        self.uow_factory = uow_factory
        self.max_attempts = max_attempts
        # Whose tracing the consumer spans belong to (`crm-loyalty` → loyalty).
        self.service = service or group.removeprefix("crm-")
        self._registrations: dict[str, _Registration[Any]] = {}

    def on(self, payload_class: type[P]) -> Callable[[Handler[P]], Handler[P]]:
        """Register a handler: `@consumer.on(PurchaseRecorded) async def f(uow, purchase, event): ...`."""

        def register(handler: Handler[P]) -> Handler[P]:
            full_type = payload_class.full_type()
            if full_type in self._registrations:
                raise ValueError(f"{self.group}: two handlers for {full_type}")
            self._registrations[full_type] = _Registration(payload_class, handler)
            return handler

        return register

    def on_many(self, payload_class: type[P]) -> Callable[[BatchHandler[P]], BatchHandler[P]]:
        """Register a handler for runs of consecutive events of one class, called with their payloads
        and envelopes in delivery order: `@consumer.on_many(PurchaseRecorded) async def f(uow,
        purchases, events): ...`. It must leave the same state, and announce the same events, as
        handling them one by one. Lone events go to the `on` handler, which defaults to this one
        called with a list of one."""

        def register(handler: BatchHandler[P]) -> BatchHandler[P]:
            full_type = payload_class.full_type()
            registration = self._registrations.get(full_type)
            if registration is None:

                async def one(uow: UnitOfWork, payload: P, event: CloudEvent) -> None:
                    await handler(uow, [payload], [event])

                registration = self._registrations[full_type] = _Registration(payload_class, one)
            if registration.batch is not None:
                raise ValueError(f"{self.group}: two batch handlers for {full_type}")
            registration.batch = handler
            return handler

        return register

    @property
    def topics(self) -> list[str]:
        return sorted({r.payload_class.topic.name for r in self._registrations.values()})

    @property
    def event_types(self) -> list[str]:
        return sorted(self._registrations)

    def handles(self, event_type: str) -> bool:
        return event_type in self._registrations

    async def handle_batch(self, deliveries: Sequence[Delivery]) -> list[DeadLetter]:
        """Handle deliveries in one transaction. Raises on a transient failure (nothing committed)."""
        relevant = _unique(
            [
                d
                for d in deliveries
                if d.event.type in self._registrations and (self.wants is None or self.wants(d.event))
            ]
        )
        if not relevant:
            return []
        if len(relevant) > 1:
            try:
                return await self._handle_all(relevant, isolated=False)
            except _HandlerFailed:
                BATCH_ISOLATION_FALLBACKS.labels(self.group).inc()
        return await self._handle_all(relevant, isolated=True)

    async def _handle_all(self, relevant: Sequence[Delivery], *, isolated: bool) -> list[DeadLetter]:
        dead: list[DeadLetter] = []
        handled: Counter[str] = Counter()
        async with self.uow_factory() as uow:
            fresh = await self._claim(uow.session, [d.event for d in relevant])
            todo = [d for d in relevant if d.event.id in fresh]
            if isolated:
                for delivery in todo:
                    letter = await self._handle_one(uow, delivery, isolated)
                    if letter is not None:
                        dead.append(letter)
                    else:
                        handled[delivery.event.type] += 1
            else:
                for run in self._runs(todo):
                    if len(run) == 1:
                        await self._handle_shared(uow, run[0])
                    else:
                        await self._handle_run(uow, run)
                    handled[run[0].event.type] += len(run)
            await uow.commit()
        for event_type, count in handled.items():
            EVENTS_HANDLED.labels(self.group, event_type).inc(count)
        return dead

    async def _handle_one(self, uow: UnitOfWork, delivery: Delivery, isolated: bool) -> DeadLetter | None:
        event = delivery.event
        if not isolated:
            await self._handle_shared(uow, delivery)
            return None
        if not telemetry(self.service).enabled:
            return await self._handle_traced(uow, delivery)
        with event_span(
            self.service,
            f"process {delivery.topic}",
            kind=SpanKind.CONSUMER,
            traceparent=event.traceparent,
            tracestate=event.tracestate,
            attributes=_span_attributes(self.group, delivery),
        ) as span:
            letter = await self._handle_traced(uow, delivery)
            if letter is not None and span is not None:
                span.set_status(Status(StatusCode.ERROR, f"dead-lettered: {letter.error_type}"))
                span.set_attribute("crm.dead_lettered", True)
            return letter

    async def _handle_shared(self, uow: UnitOfWork, delivery: Delivery) -> None:
        """The optimistic mode: no savepoint; a permanent failure abandons the whole attempt."""
        event = delivery.event
        registration = self._registrations[event.type]
        token = request_id_var.set(event.requestid)
        try:
            with (
                event_span(
                    self.service,
                    f"process {delivery.topic}",
                    kind=SpanKind.CONSUMER,
                    traceparent=event.traceparent,
                    tracestate=event.tracestate,
                    attributes=_span_attributes(self.group, delivery),
                )
                if telemetry(self.service).enabled
                else contextlib.nullcontext()
            ):
                payload = registration.payload_class.model_validate(event.data)
                await registration.handler(uow, payload, event)
        except Exception as exc:
            if is_transient(exc):
                raise
            raise _HandlerFailed(event.id) from exc
        finally:
            request_id_var.reset(token)

    def _runs(self, deliveries: Sequence[Delivery]) -> list[list[Delivery]]:
        """The deliveries in order, consecutive events of a type with a batch handler grouped."""
        runs: list[list[Delivery]] = []
        for delivery in deliveries:
            event_type = delivery.event.type
            if (
                runs
                and runs[-1][0].event.type == event_type
                and self._registrations[event_type].batch is not None
            ):
                runs[-1].append(delivery)
            else:
                runs.append([delivery])
        return runs

    async def _handle_run(self, uow: UnitOfWork, run: Sequence[Delivery]) -> None:
        """A run of events for a batch handler, in the optimistic mode: one span, child of the first
        event's context and linked to the others'; the request id only if they all share it."""
        first = run[0]
        registration = self._registrations[first.event.type]
        assert registration.batch is not None
        request_ids = {d.event.requestid for d in run}
        token = request_id_var.set(first.event.requestid if len(request_ids) == 1 else None)
        try:
            with (
                event_span(
                    self.service,
                    f"process {first.topic}",
                    kind=SpanKind.CONSUMER,
                    traceparent=first.event.traceparent,
                    tracestate=first.event.tracestate,
                    attributes={
                        **_span_attributes(self.group, first),
                        "messaging.batch.message_count": len(run),
                    },
                    links=[(d.event.traceparent, d.event.tracestate) for d in run[1:]],
                )
                if telemetry(self.service).enabled
                else contextlib.nullcontext()
            ):
                payloads = [registration.payload_class.model_validate(d.event.data) for d in run]
                await registration.batch(uow, payloads, [d.event for d in run])
        except Exception as exc:
            if is_transient(exc):
                raise
            raise _HandlerFailed(first.event.id) from exc
        finally:
            request_id_var.reset(token)

    async def _handle_traced(self, uow: UnitOfWork, delivery: Delivery) -> DeadLetter | None:
        event = delivery.event
        registration = self._registrations[event.type]
        token = request_id_var.set(event.requestid)
        last_error: BaseException | None = None
        try:
            for attempt in range(1, self.max_attempts + 1):
                try:
                    async with uow.session.begin_nested():
                        payload = registration.payload_class.model_validate(event.data)
                        await registration.handler(uow, payload, event)
                    return None
                except BaseException as exc:
                    if is_transient(exc) or not isinstance(exc, Exception):
                        raise
                    last_error = exc
                    if isinstance(exc, ValidationError):
                        break  # the same data will never validate: no point retrying
                    if attempt < self.max_attempts:
                        await asyncio.sleep(0.01 * attempt)
            assert last_error is not None
            log.warning(
                "event_dead_lettered",
                consumer_group=self.group,
                event_id=event.id,
                event_type=event.type,
                error=repr(last_error),
            )
            await uow.session.execute(
                delete(self._inbox).where(
                    self._inbox.c.consumer_group == self.group, self._inbox.c.event_id == event.id
                )
            )
            return DeadLetter(
                delivery=delivery,
                consumer_group=self.group,
                error=str(last_error) or repr(last_error),
                error_type=type(last_error).__name__,
                attempts=attempt,
                failed_at=datetime.now(UTC),
            )
        finally:
            request_id_var.reset(token)

    @property
    def _inbox(self) -> Table:
        return self.uow_factory.tables.inbox

    async def _claim(self, session: AsyncSession, events: Sequence[CloudEvent]) -> set[str]:
        """Insert inbox rows; return the ids that were not there yet (the events to handle now)."""
        now = datetime.now(UTC)
        rows = [
            {"consumer_group": self.group, "event_id": e.id, "event_type": e.type, "handled_at": now}
            for e in events
        ]
        dialect = session.bind.dialect.name if session.bind is not None else "sqlite"
        insert: Any = postgresql.insert if dialect == "postgresql" else sqlite.insert
        fresh: set[str] = set()
        for start in range(0, len(rows), 1000):  # stay under the drivers' bind-parameter limits
            stmt = (
                insert(self._inbox)
                .values(rows[start : start + 1000])
                .on_conflict_do_nothing()
                .returning(self._inbox.c.event_id)
            )
            fresh.update(row[0] for row in await session.execute(stmt))
        return fresh

    async def already_handled(self, session: AsyncSession, event_id: str) -> bool:
        row = await session.execute(
            select(self._inbox.c.event_id).where(
                self._inbox.c.consumer_group == self.group, self._inbox.c.event_id == event_id
            )
        )
        return row.first() is not None


def _span_attributes(group: str, delivery: Delivery) -> dict[str, Any]:
    """OpenTelemetry messaging (and CloudEvents) semantic-convention attributes of a consumer span."""
    event = delivery.event
    attributes: dict[str, Any] = {
        "messaging.system": "kafka" if delivery.partition is not None else "crm.inprocess",
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.destination.name": delivery.topic,
        "messaging.consumer.group.name": group,
        "messaging.message.id": event.id,
        "cloudevents.event_id": event.id,
        "cloudevents.event_source": event.source,
        "cloudevents.event_type": event.type,
    }
    if event.subject is not None:
        attributes["cloudevents.event_subject"] = event.subject
    if delivery.partition is not None:
        attributes["messaging.destination.partition.id"] = str(delivery.partition)
    if delivery.offset is not None:
        attributes["messaging.kafka.offset"] = delivery.offset
    if event.requestid is not None:
        attributes["crm.request_id"] = event.requestid
    return attributes


def _unique(deliveries: Sequence[Delivery]) -> list[Delivery]:
    seen: set[str] = set()
    out: list[Delivery] = []
    for d in deliveries:
        if d.event.id not in seen:
            seen.add(d.event.id)
            out.append(d)
    return out
