"""Consumers joining and leaving a group mid-stream: partitions move, nothing is lost or applied twice."""

from __future__ import annotations

import asyncio

from shared.messaging.kafka import KafkaBus
from shared.messaging.relay import OutboxRelay
from tests.integration.test_exactly_once_kafka import Rig, counting, expected_totals, rig, wait_for
from tests.support.testbed import make_consumer, write_note

__all__ = ["rig"]


async def test_group_members_come_and_go(rig: Rig, kafka: str) -> None:
    producer = KafkaBus(kafka, client_id="test-producer", default_partitions=3)
    await producer.start()
    relay = OutboxRelay(
        name=f"rebalance-{rig.group}",
        engine=rig.producer.engine,
        tables=rig.producer.messaging,
        bus=producer,
        batch_size=20,
        poll_interval=0.05,
    )
    rig.producer.uow.on_commit(relay.wake)
    relay.start()
    members: list[KafkaBus] = []

    async def join() -> KafkaBus:
        bus = KafkaBus(
            kafka, client_id=f"member-{len(members)}", default_partitions=3, consumer_batch_size=10
        )
        bus.subscribe(counting(make_consumer(rig.consumer, rig.note, rig.group), rig.seen))
        await bus.start()
        members.append(bus)
        return bus

    notes = [(f"c{i % 20}", i + 1) for i in range(300)]
    try:
        first = await join()
        for customer, amount in notes[:100]:
            await write_note(rig.producer, rig.note, customer, amount)
        await join()  # rebalance: partitions split between two members
        for customer, amount in notes[100:200]:
            await write_note(rig.producer, rig.note, customer, amount)
        await asyncio.sleep(1)
        await first.stop()  # rebalance again: the survivor takes everything
        for customer, amount in notes[200:]:
            await write_note(rig.producer, rig.note, customer, amount)
        await wait_for(rig.consumer, expected_totals(notes), timeout=60)
        await asyncio.sleep(1)
        assert await rig.consumer.totals_by_subject() == expected_totals(notes)
    finally:
        await relay.stop()
        for bus in members:
            await bus.stop()
        await producer.stop()
