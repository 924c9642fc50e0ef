"""The event bus port and its in-process backend (embedded mode).

The outbox relay hands committed events to `EventBus.publish`; consumers are attached with
`subscribe`. Two backends implement it: `KafkaBus` (distributed mode, in `kafka.py`) and
`InProcessBus` here, which delivers straight into each subscribed consumer's own transaction.

`publish` returns only once every event is durable downstream — acknowledged by Kafka, or handled
(or dead-lettered) by every in-process subscriber — and raises otherwise, so the relay keeps the
outbox rows until then. In embedded mode, therefore, an outbox row stays until every subscriber
has handled it: a crash at any point means redelivery, which the inboxes make harmless.
"""

from __future__ import annotations

import abc
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update

from shared.events.envelope import CloudEvent
from shared.logging import get_logger
from shared.messaging.consumer import DeadLetter, Delivery, EventConsumer
from shared.metrics import DEAD_LETTERS

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class OutboundMessage:
    topic: str
    event: CloudEvent


@dataclass(frozen=True, slots=True)
class StoredDeadLetter:
    """A dead letter as listed by `crm dlq list`, whichever backend holds it."""

    ref: str  # backend-specific handle: a row id, or topic:partition:offset
    consumer_group: str
    topic: str
    event_id: str
    event_type: str
    subject: str | None
    error: str
    failed_at: datetime | None
    envelope: dict[str, Any]


class EventBus(abc.ABC):
    """Where committed events go, and where consumers get them from."""

    def __init__(self) -> None:
        self.consumers: list[EventConsumer] = []

    def subscribe(self, consumer: EventConsumer) -> None:
        if any(c.group == consumer.group for c in self.consumers):
            raise ValueError(f"consumer group {consumer.group} subscribed twice")
        self.consumers.append(consumer)

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Connect and start delivering to subscribers."""

    async def stop(self) -> None:  # noqa: B027 - optional hook
        """Stop delivering; wait for in-flight batches."""

    @abc.abstractmethod
    async def publish(self, messages: Sequence[OutboundMessage]) -> None:
        """Make the messages durable downstream, in order per key; raise if that cannot be confirmed."""

    async def ready(self) -> bool:
        return True

    @abc.abstractmethod
    async def dead_letters(
        self, group: str | None = None, *, include_replayed: bool = False
    ) -> list[StoredDeadLetter]:
        """Dead letters awaiting attention."""

    @abc.abstractmethod
    async def replay(self, group: str | None = None, refs: Sequence[str] | None = None) -> int:
        """Deliver dead letters again (all of a group, or the given ones); return how many."""


class InProcessBus(EventBus):
    """Embedded mode: publishing hands events directly to each subscriber's `handle_batch`."""

    async def publish(self, messages: Sequence[OutboundMessage]) -> None:
        by_topic: dict[str, list[Delivery]] = defaultdict(list)
        ordered: list[Delivery] = []
        for message in messages:
            delivery = Delivery(event=message.event, topic=message.topic)
            by_topic[message.topic].append(delivery)
            ordered.append(delivery)
        for consumer in self.consumers:
            topics = set(consumer.topics)
            batch = [d for d in ordered if d.topic in topics]
            if not batch:
                continue
            dead = await consumer.handle_batch(batch)  # raises on transient failure: the relay retries
            if dead:
                await self._store(consumer, dead)

    async def _store(self, consumer: EventConsumer, letters: Sequence[DeadLetter]) -> None:
        tables = consumer.uow_factory.tables
        async with consumer.uow_factory() as uow:
            await uow.session.execute(
                tables.dead_letters.insert(),
                [
                    {
                        "consumer_group": letter.consumer_group,
                        "topic": letter.delivery.topic,
                        "event_id": letter.delivery.event.id,
                        "event_type": letter.delivery.event.type,
                        "envelope": letter.delivery.event.model_dump(mode="json"),
                        "error": f"{letter.error_type}: {letter.error}",
                        "attempts": letter.attempts,
                        "failed_at": letter.failed_at,
                    }
                    for letter in letters
                ],
            )
            await uow.commit()
        for letter in letters:
            DEAD_LETTERS.labels(letter.consumer_group, letter.delivery.event.type).inc()

    def _consumers(self, group: str | None) -> list[EventConsumer]:
        return [c for c in self.consumers if group is None or c.group == group]

    async def dead_letters(
        self, group: str | None = None, *, include_replayed: bool = False
    ) -> list[StoredDeadLetter]:
        out: list[StoredDeadLetter] = []
        for consumer in self._consumers(group):
            table = consumer.uow_factory.tables.dead_letters
            query = select(table).where(table.c.consumer_group == consumer.group).order_by(table.c.id)
            if not include_replayed:
                query = query.where(table.c.replayed_at.is_(None))
            async with consumer.uow_factory() as uow:
                rows = (await uow.session.execute(query)).mappings().all()
            out.extend(
                StoredDeadLetter(
                    ref=str(row["id"]),
                    consumer_group=row["consumer_group"],
                    topic=row["topic"],
                    event_id=row["event_id"],
                    event_type=row["event_type"],
                    subject=row["envelope"].get("subject"),
                    error=row["error"],
                    failed_at=row["failed_at"],
                    envelope=row["envelope"],
                )
                for row in rows
            )
        return out

    async def replay(self, group: str | None = None, refs: Sequence[str] | None = None) -> int:
        replayed = 0
        for consumer in self._consumers(group):
            table = consumer.uow_factory.tables.dead_letters
            letters = [d for d in await self.dead_letters(consumer.group) if refs is None or d.ref in refs]
            for letter in letters:
                delivery = Delivery(event=CloudEvent.model_validate(letter.envelope), topic=letter.topic)
                dead = await consumer.handle_batch([delivery])
                async with consumer.uow_factory() as uow:
                    await uow.session.execute(
                        update(table)
                        .where(table.c.id == int(letter.ref))
                        .values(replayed_at=datetime.now(UTC))
                    )
                    await uow.commit()
                if dead:
                    await self._store(consumer, dead)
                else:
                    replayed += 1
        return replayed
