"""Batch handlers (`EventConsumer.on_many`): consecutive events of one type in one call, in order,
other types keeping their place; lone events and the isolated retry going through the one-event
handler, so a poison event among a run is still dead-lettered alone."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from shared.events.envelope import CloudEvent, EventPayload, new_event
from shared.messaging.consumer import Delivery, EventConsumer
from shared.metrics import BATCH_ISOLATION_FALLBACKS
from shared.uow import UnitOfWork
from tests.support.testbed import Side, make_event_class


def note(note_class: type[EventPayload], customer: str, amount: int, *, poison: bool = False) -> Delivery:
    payload = note_class(
        note_id=f"n-{uuid.uuid4().hex[:6]}", customer_id=customer, amount=amount, poison=poison
    )
    return Delivery(event=new_event(payload, source="/test"), topic=note_class.topic.name)


def recording_consumer(
    side: Side, notes: type[EventPayload], others: type[EventPayload]
) -> tuple[EventConsumer, list[tuple[str, list[int]]]]:
    """Notes have a batch handler, others a one-event handler; calls are recorded in order."""
    consumer = EventConsumer("runs", side.uow, max_attempts=1)
    calls: list[tuple[str, list[int]]] = []

    async def write(uow: UnitOfWork, customer: str, amount: int) -> None:
        await uow.session.execute(side.totals.insert().values(customer_id=customer, amount=amount, count=1))

    @consumer.on_many(notes)
    async def many(uow: UnitOfWork, payloads: list[Any], events: list[CloudEvent]) -> None:
        assert [e.data["note_id"] for e in events] == [p.note_id for p in payloads]
        calls.append(("many", [p.amount for p in payloads]))
        for p in payloads:
            if p.poison:
                raise ValueError(f"{p.note_id} is poison")
            await write(uow, p.note_id, p.amount)

    @consumer.on(others)
    async def one(uow: UnitOfWork, payload: Any, _event: CloudEvent) -> None:
        calls.append(("other", [payload.amount]))
        await write(uow, payload.note_id, payload.amount)

    return consumer, calls


async def test_consecutive_events_are_one_call_in_order_and_others_keep_their_place(
    consumer_side: Side, note_class: type[EventPayload]
) -> None:
    others = make_event_class(uuid.uuid4().hex[:12])
    consumer, calls = recording_consumer(consumer_side, note_class, others)
    batch = [
        note(note_class, "a", 1),
        note(note_class, "b", 2),
        note(others, "c", 3),
        note(note_class, "d", 4),
        note(note_class, "e", 5),
        note(note_class, "f", 6),
    ]
    assert await consumer.handle_batch(batch) == []
    assert calls == [("many", [1, 2]), ("other", [3]), ("many", [4, 5, 6])]
    assert len(await consumer_side.totals_by_subject()) == 6
    calls.clear()
    # Redelivered with one new event: only the new one is handled, and alone it is one event.
    fresh = note(note_class, "g", 7)
    assert await consumer.handle_batch([*batch, fresh]) == []
    assert calls == [("many", [7])]


async def test_a_poison_event_in_a_run_is_dead_lettered_alone(
    consumer_side: Side, note_class: type[EventPayload]
) -> None:
    others = make_event_class(uuid.uuid4().hex[:12])
    consumer, calls = recording_consumer(consumer_side, note_class, others)
    fallbacks = BATCH_ISOLATION_FALLBACKS.labels("runs")
    before = fallbacks._value.get()
    batch = [note(note_class, "a", 1), note(note_class, "b", 2, poison=True), note(note_class, "c", 3)]
    dead = await consumer.handle_batch(batch)
    assert [d.delivery.event.id for d in dead] == [batch[1].event.id]
    assert fallbacks._value.get() == before + 1
    # The run was tried once as a whole, then each event alone (a list of one each).
    assert calls == [("many", [1, 2, 3]), ("many", [1]), ("many", [2]), ("many", [3])]
    assert {n: total for n, (total, _) in (await consumer_side.totals_by_subject()).items()} == {
        batch[0].event.data["note_id"]: 1,
        batch[2].event.data["note_id"]: 3,
    }


def test_two_batch_handlers_for_one_type_are_refused(
    consumer_side: Side, note_class: type[EventPayload]
) -> None:
    consumer = EventConsumer("twice", consumer_side.uow)

    async def handler(uow: UnitOfWork, payloads: list[Any], events: list[CloudEvent]) -> None:
        return None

    consumer.on_many(note_class)(handler)
    with pytest.raises(ValueError, match="two batch handlers"):
        consumer.on_many(note_class)(handler)
