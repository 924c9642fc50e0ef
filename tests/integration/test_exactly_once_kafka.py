"""An event written with a state change reaches its consumer exactly once in effect — on real
PostgreSQL and real Kafka — even when (a) the relay is stopped and restarted, or loses an
acknowledgement, (b) the same message is delivered twice, (c) the consumer crashes between its
database commit and its offset commit, (d) a handler fails permanently (dead letter, and the
partition keeps flowing; replay after a fix)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from shared.events.envelope import CloudEvent, EventPayload
from shared.messaging.bus import OutboundMessage
from shared.messaging.consumer import Delivery, EventConsumer
from shared.messaging.kafka import KafkaBus, dead_letter_topic
from shared.messaging.relay import OutboxRelay
from tests.support.testbed import Side, make_consumer, make_event_class, make_side, write_note


class SimulatedCrash(Exception):
    pass


class AckLosingBus(KafkaBus):
    """Publishes, then reports failure once — as if the broker's acknowledgement never arrived."""

    lose_next = False

    async def publish(self, messages: Sequence[OutboundMessage]) -> None:
        await super().publish(messages)
        if self.lose_next:
            self.lose_next = False
            raise ConnectionError("acknowledgement lost")


class CrashBeforeOffsetCommit(KafkaBus):
    """The consumer dies after its database commit, before committing the Kafka offset — once."""

    crashes = 0
    crash_next = True

    async def _commit_offsets(
        self, kafka_consumer: AIOKafkaConsumer, offsets: dict[TopicPartition, int]
    ) -> None:
        if self.crash_next:
            self.crash_next = False
            self.crashes += 1
            raise SimulatedCrash("killed between database commit and offset commit")
        await super()._commit_offsets(kafka_consumer, offsets)


@dataclass
class Rig:
    note: type[EventPayload]
    producer: Side
    consumer: Side
    group: str
    seen: list[str]  # event ids the consumer was handed, duplicates included


@pytest.fixture
async def rig(pg_database: str, pg_database_2: str, kafka: str, run_id: str) -> AsyncIterator[Rig]:
    producer = make_side(pg_database, "/crm/test-producer")
    consumer = make_side(pg_database_2, "/crm/test-consumer")
    await producer.create_all()
    await consumer.create_all()
    yield Rig(make_event_class(run_id), producer, consumer, f"test-{run_id}", [])
    await producer.engine.dispose()
    await consumer.engine.dispose()


def counting(consumer: EventConsumer, seen: list[str]) -> EventConsumer:
    original = consumer.handle_batch

    async def handle_batch(deliveries: Sequence[Delivery]) -> Any:
        seen.extend(d.event.id for d in deliveries)
        return await original(deliveries)

    consumer.handle_batch = handle_batch  # type: ignore[method-assign]
    return consumer


async def start_consumer(
    rig: Rig, kafka: str, bus_class: type[KafkaBus] = KafkaBus, **kwargs: Any
) -> KafkaBus:
    bus = bus_class(kafka, client_id=f"test-consumer-{rig.group}", default_partitions=3)
    bus.subscribe(counting(make_consumer(rig.consumer, rig.note, rig.group, **kwargs), rig.seen))
    await bus.start()
    return bus


async def start_producer(kafka: str, bus_class: type[KafkaBus] = KafkaBus) -> KafkaBus:
    bus = bus_class(kafka, client_id="test-producer", default_partitions=3)
    await bus.start()
    return bus


def relay(rig: Rig, bus: KafkaBus) -> OutboxRelay:
    relay = OutboxRelay(
        name=f"test-{rig.group}",
        engine=rig.producer.engine,
        tables=rig.producer.messaging,
        bus=bus,
        batch_size=7,
        poll_interval=0.05,
    )
    rig.producer.uow.on_commit(relay.wake)
    return relay


async def wait_for(side: Side, expected: dict[str, tuple[int, int]], timeout: float = 30) -> None:
    async with asyncio.timeout(timeout):
        while (await side.totals_by_subject()) != expected:
            await asyncio.sleep(0.05)


def expected_totals(notes: list[tuple[str, int]]) -> dict[str, tuple[int, int]]:
    out: dict[str, tuple[int, int]] = {}
    for customer, amount in notes:
        total, count = out.get(customer, (0, 0))
        out[customer] = (total + amount, count + 1)
    return out


async def test_relay_stopped_restarted_and_losing_an_ack(rig: Rig, kafka: str) -> None:
    consumer_bus = await start_consumer(rig, kafka)
    producer_bus = await start_producer(kafka, AckLosingBus)
    notes = [(f"c{i % 6}", i + 1) for i in range(60)]
    try:
        the_relay = relay(rig, producer_bus)
        the_relay.start()
        for customer, amount in notes[:20]:
            await write_note(rig.producer, rig.note, customer, amount)
        await wait_for(rig.consumer, expected_totals(notes[:20]))
        await the_relay.stop()

        for customer, amount in notes[20:]:  # written while no relay runs: they wait in the outbox
            await write_note(rig.producer, rig.note, customer, amount)
        assert await rig.producer.outbox_count() == 40

        assert isinstance(producer_bus, AckLosingBus)
        producer_bus.lose_next = True  # the first batch after restart is published but looks failed
        the_relay.start()
        await wait_for(rig.consumer, expected_totals(notes))
        async with asyncio.timeout(10):
            while await rig.producer.outbox_count():
                await asyncio.sleep(0.05)
        await the_relay.stop()
        await asyncio.sleep(0.5)  # anything still in flight would show as a double count below
        assert await rig.consumer.totals_by_subject() == expected_totals(notes)
        assert len(rig.seen) > len(notes), "the lost acknowledgement should have caused a redelivery"
    finally:
        await producer_bus.stop()
        await consumer_bus.stop()


async def test_the_same_message_delivered_twice_applies_once(rig: Rig, kafka: str) -> None:
    consumer_bus = await start_consumer(rig, kafka)
    producer_bus = await start_producer(kafka)
    try:
        from shared.events.envelope import new_event

        event: CloudEvent = new_event(rig.note(note_id="n1", customer_id="c1", amount=5), source="/test")
        message = OutboundMessage(topic=rig.note.topic.name, event=event)
        await producer_bus.publish([message, message])
        await producer_bus.publish([message])
        await wait_for(rig.consumer, {"c1": (5, 1)})
        async with asyncio.timeout(10):
            while rig.seen.count(event.id) < 3:
                await asyncio.sleep(0.05)
        assert await rig.consumer.totals_by_subject() == {"c1": (5, 1)}
    finally:
        await producer_bus.stop()
        await consumer_bus.stop()


async def test_consumer_crash_between_commit_and_offset_commit(rig: Rig, kafka: str) -> None:
    producer_bus = await start_producer(kafka)
    notes = [(f"c{i % 4}", 10 + i) for i in range(30)]
    try:
        the_relay = relay(rig, producer_bus)
        for customer, amount in notes:
            await write_note(rig.producer, rig.note, customer, amount)
        await the_relay.drain()

        consumer_bus = await start_consumer(rig, kafka, CrashBeforeOffsetCommit)
        try:
            await wait_for(rig.consumer, expected_totals(notes))
            assert isinstance(consumer_bus, CrashBeforeOffsetCommit)
            async with asyncio.timeout(30):  # the restarted consumer re-reads the uncommitted batch
                while len(rig.seen) <= len(notes):
                    await asyncio.sleep(0.05)
            await asyncio.sleep(0.5)
            assert consumer_bus.crashes == 1
            assert await rig.consumer.totals_by_subject() == expected_totals(notes)
        finally:
            await consumer_bus.stop()

        # A brand-new consumer process of the same group finds every offset committed: nothing to redo.
        seen_before = len(rig.seen)
        consumer_bus = await start_consumer(rig, kafka)
        await asyncio.sleep(3)
        await consumer_bus.stop()
        assert len(rig.seen) == seen_before
        assert await rig.consumer.totals_by_subject() == expected_totals(notes)
    finally:
        await producer_bus.stop()


async def test_poison_message_goes_to_the_dead_letter_topic_and_the_partition_flows(
    rig: Rig, kafka: str
) -> None:
    fixed = {"yes": False}
    consumer_bus = await start_consumer(rig, kafka, poison_enabled=lambda: not fixed["yes"])
    producer_bus = await start_producer(kafka)
    try:
        the_relay = relay(rig, producer_bus)
        await write_note(rig.producer, rig.note, "c1", 1)
        poison_id = await write_note(rig.producer, rig.note, "c1", 100, poison=True)
        await write_note(rig.producer, rig.note, "c1", 2)  # same customer: same partition, after the poison
        await the_relay.drain()
        await wait_for(rig.consumer, {"c1": (3, 2)})

        letters: list[Any] = []
        async with asyncio.timeout(15):
            while not letters:
                letters = await consumer_bus.dead_letters(rig.group)
        assert len(letters) == 1
        letter = letters[0]
        assert letter.topic == rig.note.topic.name
        assert letter.subject == "c1"
        assert letter.envelope["data"]["note_id"] == poison_id
        assert "Poisoned" in letter.error
        assert letter.ref.startswith(dead_letter_topic(rig.group) + ":")

        fixed["yes"] = True
        assert await consumer_bus.replay(rig.group) == 1
        await wait_for(rig.consumer, {"c1": (103, 3)})
        assert await consumer_bus.dead_letters(rig.group) == []
    finally:
        await producer_bus.stop()
        await consumer_bus.stop()
