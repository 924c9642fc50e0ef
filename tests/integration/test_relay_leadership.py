"""On PostgreSQL only one replica of a service relays its outbox at a time, so per-customer order holds."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from shared.messaging.bus import OutboundMessage
from shared.messaging.relay import OutboxRelay
from tests.support.testbed import make_event_class, make_side, write_note
from tests.unit.test_outbox import FakeBus


class SlowBus(FakeBus):
    async def publish(self, messages: Sequence[OutboundMessage]) -> None:
        await asyncio.sleep(0.01)
        await super().publish(messages)


async def test_two_replicas_one_relay_in_order(pg_database: str, run_id: str) -> None:
    side = make_side(pg_database, "/crm/test")
    await side.create_all()
    note = make_event_class(run_id)
    bus = SlowBus()
    relays = [
        OutboxRelay(
            name=f"svc-{run_id}",
            engine=side.engine,
            tables=side.messaging,
            bus=bus,
            batch_size=5,
            poll_interval=0.02,
        )
        for _ in range(2)
    ]
    try:
        for relay in relays:
            relay.start()
        async with asyncio.timeout(10):
            while not any(r.is_leader for r in relays):
                await asyncio.sleep(0.01)
        assert sum(r.is_leader for r in relays) == 1
        ids = [await write_note(side, note, f"c{i % 3}", i) for i in range(60)]
        async with asyncio.timeout(20):
            while len(bus.published) < 60:
                await asyncio.sleep(0.02)
        assert [m.event.data["note_id"] for m in bus.published] == ids  # once each, in commit order
        leader = next(r for r in relays if r.is_leader)
        follower = next(r for r in relays if not r.is_leader)
        assert follower.published_total == 0

        await leader.stop()  # the leader goes away: the other takes over
        async with asyncio.timeout(10):
            while not follower.is_leader:
                await asyncio.sleep(0.02)
        more = [await write_note(side, note, "c9", i) for i in range(5)]
        async with asyncio.timeout(10):
            while len(bus.published) < 65:
                await asyncio.sleep(0.02)
        assert [m.event.data["note_id"] for m in bus.published[60:]] == more
    finally:
        for relay in relays:
            await relay.stop()
        await side.engine.dispose()
