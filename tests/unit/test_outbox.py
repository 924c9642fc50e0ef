"""The transactional outbox and its relay, with a fake bus."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from shared.events.envelope import EventPayload
from shared.messaging.bus import EventBus, OutboundMessage, StoredDeadLetter
from shared.messaging.relay import OutboxRelay
from tests.support.testbed import Side, write_note


class FakeBus(EventBus):
    """Records what it is given; can be told to fail before, or after, 'publishing'."""

    def __init__(self) -> None:
        super().__init__()
        self.published: list[OutboundMessage] = []
        self.fail_before = 0
        self.fail_after = 0

    async def publish(self, messages: Sequence[OutboundMessage]) -> None:
        if self.fail_before:
            self.fail_before -= 1
            raise ConnectionError("broker unreachable")
        self.published.extend(messages)
        if self.fail_after:
            self.fail_after -= 1
            raise ConnectionError("acknowledgement lost")

    async def dead_letters(
        self, group: str | None = None, *, include_replayed: bool = False
    ) -> list[StoredDeadLetter]:
        return []

    async def replay(self, group: str | None = None, refs: Sequence[str] | None = None) -> int:
        return 0


def relay_for(side: Side, bus: EventBus, batch_size: int = 500) -> OutboxRelay:
    return OutboxRelay(name="test", engine=side.engine, tables=side.messaging, bus=bus, batch_size=batch_size)


class TestUnitOfWork:
    async def test_event_is_written_with_the_state_change(
        self, producer: Side, note_class: type[EventPayload]
    ) -> None:
        await write_note(producer, note_class, "c1", 5)
        assert await producer.outbox_count() == 1

    async def test_nothing_is_written_without_commit(
        self, producer: Side, note_class: type[EventPayload]
    ) -> None:
        await write_note(producer, note_class, "c1", 5, commit=False)
        assert await producer.outbox_count() == 0
        async with producer.engine.connect() as conn:
            assert (await conn.execute(producer.notes.select())).all() == []

    async def test_an_error_rolls_back_state_and_event_together(
        self, producer: Side, note_class: type[EventPayload]
    ) -> None:
        with pytest.raises(RuntimeError):
            async with producer.uow() as uow:
                await uow.session.execute(producer.notes.insert().values(id="n1", amount=1))
                await uow.publish(note_class(note_id="n1", customer_id="c1", amount=1))
                raise RuntimeError("use case failed")
        assert await producer.outbox_count() == 0

    async def test_commit_wakes_the_relay(self, producer: Side, note_class: type[EventPayload]) -> None:
        woken: list[bool] = []
        producer.uow.on_commit(lambda: woken.append(True))
        await write_note(producer, note_class, "c1", 5)
        assert woken == [True]


class TestRelay:
    async def test_publishes_in_commit_order_then_deletes(
        self, producer: Side, note_class: type[EventPayload]
    ) -> None:
        ids = [await write_note(producer, note_class, f"c{i % 3}", i) for i in range(25)]
        bus = FakeBus()
        relay = relay_for(producer, bus, batch_size=10)
        await relay.drain()
        assert [m.event.data["note_id"] for m in bus.published] == ids
        assert all(m.topic == note_class.topic.name for m in bus.published)
        assert await producer.outbox_count() == 0
        assert relay.published_total == 25

    async def test_rows_stay_while_the_bus_is_down(
        self, producer: Side, note_class: type[EventPayload]
    ) -> None:
        await write_note(producer, note_class, "c1", 1)
        bus = FakeBus()
        bus.fail_before = 1
        relay = relay_for(producer, bus)
        with pytest.raises(ConnectionError):
            await relay.relay_once()
        assert await producer.outbox_count() == 1
        assert await relay.relay_once() == 1
        assert await producer.outbox_count() == 0

    async def test_lost_acknowledgement_republishes_rather_than_loses(
        self, producer: Side, note_class: type[EventPayload]
    ) -> None:
        await write_note(producer, note_class, "c1", 1)
        bus = FakeBus()
        bus.fail_after = 1
        relay = relay_for(producer, bus)
        with pytest.raises(ConnectionError):
            await relay.relay_once()
        await relay.relay_once()
        # At-least-once: the same event (same id) twice; consumers' inboxes make that harmless.
        assert len(bus.published) == 2
        assert bus.published[0].event.id == bus.published[1].event.id
        assert await producer.outbox_count() == 0

    async def test_background_relay_delivers_after_commit(
        self, producer: Side, note_class: type[EventPayload]
    ) -> None:
        import asyncio

        bus = FakeBus()
        relay = relay_for(producer, bus)
        producer.uow.on_commit(relay.wake)
        relay.start()
        try:
            await write_note(producer, note_class, "c1", 1)
            async with asyncio.timeout(5):
                while not bus.published:
                    await asyncio.sleep(0.01)
        finally:
            await relay.stop()
        assert len(bus.published) == 1

    async def test_a_stale_delete_never_removes_a_newer_event_with_a_reused_id(
        self, producer: Side, note_class: type[EventPayload]
    ) -> None:
        """Two relays on one SQLite outbox (another process, or drain beside the loop): the slow one
        publishes E0, the fast one publishes and deletes E0, E1 is written and SQLite gives it E0's
        freed rowid; the slow one's delete must not take E1 with it (it did: a lost purchase)."""
        import asyncio

        class SlowBus(FakeBus):
            def __init__(self) -> None:
                super().__init__()
                self.entered = asyncio.Event()
                self.release = asyncio.Event()

            async def publish(self, messages: Sequence[OutboundMessage]) -> None:
                self.entered.set()
                await self.release.wait()
                await super().publish(messages)

        await write_note(producer, note_class, "c1", 1)
        slow_bus, fast_bus = SlowBus(), FakeBus()
        slow, fast = relay_for(producer, slow_bus), relay_for(producer, fast_bus)
        pending = asyncio.create_task(slow.relay_once())
        await slow_bus.entered.wait()
        assert await fast.relay_once() == 1
        newer = await write_note(producer, note_class, "c2", 2)
        async with producer.engine.connect() as conn:
            reused = (await conn.execute(producer.messaging.outbox.select())).one()
        assert reused.id == 1  # SQLite handed the newer event the freed id: the hazard is real
        slow_bus.release.set()
        assert await pending == 1
        assert await producer.outbox_count() == 1  # the newer event survived the stale delete
        assert await fast.relay_once() == 1
        assert fast_bus.published[-1].event.data["note_id"] == newer

    async def test_drain_and_the_background_loop_publish_a_batch_once(
        self, producer: Side, note_class: type[EventPayload]
    ) -> None:
        import asyncio

        class YieldingBus(FakeBus):
            async def publish(self, messages: Sequence[OutboundMessage]) -> None:
                await asyncio.sleep(0.01)  # like a broker round trip: other tasks run meanwhile
                await super().publish(messages)

        for n in range(3):
            await write_note(producer, note_class, f"c{n}", n)
        bus = YieldingBus()
        relay = relay_for(producer, bus)
        await asyncio.gather(*(relay.relay_once() for _ in range(4)))
        assert len(bus.published) == 3
        assert await producer.outbox_count() == 0
