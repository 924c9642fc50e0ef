"""The in-process bus (embedded mode): delivery to every subscriber, nothing lost, dead letters kept."""

from __future__ import annotations

import pytest
from sqlalchemy import exc as sa_exc

from shared.events.envelope import EventPayload
from shared.messaging.bus import InProcessBus
from shared.messaging.relay import OutboxRelay
from tests.support.testbed import Side, make_consumer, write_note


def relay_for(side: Side, bus: InProcessBus) -> OutboxRelay:
    return OutboxRelay(name="producer", engine=side.engine, tables=side.messaging, bus=bus)


class TestInProcessBus:
    async def test_every_subscriber_gets_every_event_once(
        self, producer: Side, consumer_side: Side, note_class: type[EventPayload]
    ) -> None:
        bus = InProcessBus()
        bus.subscribe(make_consumer(consumer_side, note_class, "g1"))
        bus.subscribe(make_consumer(consumer_side, note_class, "g2"))
        for amount in (1, 2, 3):
            await write_note(producer, note_class, "c1", amount)
        await relay_for(producer, bus).drain()
        assert await consumer_side.totals_by_subject() == {"c1": (12, 6)}
        assert await producer.outbox_count() == 0

    async def test_outbox_row_stays_until_every_subscriber_handled_it(
        self, producer: Side, consumer_side: Side, note_class: type[EventPayload]
    ) -> None:
        down = {"on": True}

        def database_down(_note: object) -> None:
            if down["on"]:
                raise sa_exc.OperationalError("INSERT", {}, ConnectionError("database is down"))

        bus = InProcessBus()
        bus.subscribe(make_consumer(consumer_side, note_class, "healthy"))
        bus.subscribe(make_consumer(consumer_side, note_class, "sick", before=database_down))
        await write_note(producer, note_class, "c1", 5)
        relay = relay_for(producer, bus)
        with pytest.raises(sa_exc.OperationalError):
            await relay.relay_once()
        assert await producer.outbox_count() == 1  # kept: one subscriber has not handled it
        down["on"] = False
        await relay.drain()
        assert await producer.outbox_count() == 0
        # The healthy group got it twice but applied it once (inbox); the sick one once.
        assert await consumer_side.totals_by_subject() == {"c1": (10, 2)}

    async def test_poison_goes_to_dead_letters_and_replays_after_a_fix(
        self, producer: Side, consumer_side: Side, note_class: type[EventPayload]
    ) -> None:
        fixed = {"yes": False}
        bus = InProcessBus()
        bus.subscribe(make_consumer(consumer_side, note_class, "g1", poison_enabled=lambda: not fixed["yes"]))
        await write_note(producer, note_class, "c1", 5, poison=True)
        await write_note(producer, note_class, "c2", 7)
        await relay_for(producer, bus).drain()
        assert await consumer_side.totals_by_subject() == {"c2": (7, 1)}
        letters = await bus.dead_letters()
        assert [(d.consumer_group, d.subject) for d in letters] == [("g1", "c1")]
        assert "Poisoned" in letters[0].error

        assert await bus.replay("g1") == 0  # still broken: it fails again and stays listed
        assert len(await bus.dead_letters()) == 1

        fixed["yes"] = True
        assert await bus.replay("g1") == 1
        assert await bus.dead_letters() == []
        assert len(await bus.dead_letters(include_replayed=True)) == 2
        assert await consumer_side.totals_by_subject() == {"c1": (5, 1), "c2": (7, 1)}

    def test_a_group_subscribes_once(self, consumer_side: Side, note_class: type[EventPayload]) -> None:
        bus = InProcessBus()
        bus.subscribe(make_consumer(consumer_side, note_class, "g1"))
        with pytest.raises(ValueError, match="twice"):
            bus.subscribe(make_consumer(consumer_side, note_class, "g1"))
