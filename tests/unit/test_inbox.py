"""The consumer side: inbox deduplication, savepoints per event, dead letters, transient failures."""

from __future__ import annotations

import pytest
from sqlalchemy import event as sa_event
from sqlalchemy import exc as sa_exc
from sqlalchemy import select

from shared.events.envelope import EventPayload, new_event
from shared.messaging.consumer import Delivery
from shared.metrics import BATCH_ISOLATION_FALLBACKS
from tests.support.testbed import Side, make_consumer


def delivery(note_class: type[EventPayload], customer: str, amount: int, *, poison: bool = False) -> Delivery:
    payload = note_class(note_id=f"n-{customer}-{amount}", customer_id=customer, amount=amount, poison=poison)
    return Delivery(event=new_event(payload, source="/test"), topic=note_class.topic.name)


class TestHandleBatch:
    async def test_each_event_is_applied_once(
        self, consumer_side: Side, note_class: type[EventPayload]
    ) -> None:
        consumer = make_consumer(consumer_side, note_class, "g1")
        batch = [delivery(note_class, "c1", 5), delivery(note_class, "c2", 7)]
        assert await consumer.handle_batch(batch) == []
        assert await consumer_side.totals_by_subject() == {"c1": (5, 1), "c2": (7, 1)}

    async def test_redelivery_is_ignored(self, consumer_side: Side, note_class: type[EventPayload]) -> None:
        consumer = make_consumer(consumer_side, note_class, "g1")
        d = delivery(note_class, "c1", 5)
        await consumer.handle_batch([d])
        await consumer.handle_batch([d])
        await consumer.handle_batch([d, d])
        assert await consumer_side.totals_by_subject() == {"c1": (5, 1)}

    async def test_groups_have_separate_inboxes(
        self, consumer_side: Side, note_class: type[EventPayload]
    ) -> None:
        d = delivery(note_class, "c1", 5)
        await make_consumer(consumer_side, note_class, "g1").handle_batch([d])
        await make_consumer(consumer_side, note_class, "g2").handle_batch([d])
        assert await consumer_side.totals_by_subject() == {"c1": (10, 2)}

    async def test_a_poison_event_is_dead_lettered_and_the_rest_committed(
        self, consumer_side: Side, note_class: type[EventPayload]
    ) -> None:
        consumer = make_consumer(consumer_side, note_class, "g1")
        poison = delivery(note_class, "c9", 1, poison=True)
        dead = await consumer.handle_batch(
            [delivery(note_class, "c1", 5), poison, delivery(note_class, "c2", 7)]
        )
        assert [d.delivery.event.id for d in dead] == [poison.event.id]
        assert dead[0].error_type == "Poisoned"
        assert dead[0].attempts == 2
        assert await consumer_side.totals_by_subject() == {"c1": (5, 1), "c2": (7, 1)}
        # Its inbox row was removed, so a replay after a fix is handled, not skipped as a duplicate.
        assert not await _in_inbox(consumer_side, "g1", poison.event.id)

    async def test_a_clean_batch_takes_no_savepoints(
        self, consumer_side: Side, note_class: type[EventPayload]
    ) -> None:
        consumer = make_consumer(consumer_side, note_class, "g1")
        statements: list[str] = []
        listener = lambda *args: statements.append(args[2])  # noqa: E731  (conn, cursor, statement, ...)
        sa_event.listen(consumer_side.engine.sync_engine, "before_cursor_execute", listener)
        try:
            await consumer.handle_batch([delivery(note_class, f"c{i}", i) for i in range(1, 6)])
        finally:
            sa_event.remove(consumer_side.engine.sync_engine, "before_cursor_execute", listener)
        assert await consumer_side.totals_by_subject() == {f"c{i}": (i, 1) for i in range(1, 6)}
        assert not [s for s in statements if "SAVEPOINT" in s.upper()]

    async def test_a_failing_handler_makes_the_batch_run_again_isolated_and_counts_each_event_once(
        self, consumer_side: Side, note_class: type[EventPayload]
    ) -> None:
        consumer = make_consumer(consumer_side, note_class, "g-fallback")
        before = BATCH_ISOLATION_FALLBACKS.labels("g-fallback")._value.get()
        poison = delivery(note_class, "c9", 1, poison=True)
        # The poison comes last: the optimistic pass has applied the other two before it fails.
        dead = await consumer.handle_batch(
            [delivery(note_class, "c1", 5), delivery(note_class, "c2", 7), poison]
        )
        assert [d.delivery.event.id for d in dead] == [poison.event.id]
        assert await consumer_side.totals_by_subject() == {"c1": (5, 1), "c2": (7, 1)}
        assert BATCH_ISOLATION_FALLBACKS.labels("g-fallback")._value.get() == before + 1

    async def test_invalid_payload_is_dead_lettered_without_retrying(
        self, consumer_side: Side, note_class: type[EventPayload]
    ) -> None:
        consumer = make_consumer(consumer_side, note_class, "g1")
        good = delivery(note_class, "c1", 5)
        broken = Delivery(
            event=good.event.model_copy(update={"id": "broken", "data": {"amount": "lots"}}), topic=good.topic
        )
        dead = await consumer.handle_batch([broken])
        assert dead[0].error_type == "ValidationError"
        assert dead[0].attempts == 1

    async def test_transient_failure_commits_nothing(
        self, consumer_side: Side, note_class: type[EventPayload]
    ) -> None:
        calls = {"n": 0}

        def flaky(note: object) -> None:
            calls["n"] += 1
            if calls["n"] == 2:
                raise sa_exc.OperationalError("SELECT 1", {}, ConnectionError("server closed the connection"))

        consumer = make_consumer(consumer_side, note_class, "g1", before=flaky)
        batch = [delivery(note_class, "c1", 5), delivery(note_class, "c2", 7)]
        with pytest.raises(sa_exc.OperationalError):
            await consumer.handle_batch(batch)
        assert await consumer_side.totals_by_subject() == {}
        # Retried later, the whole batch applies exactly once.
        await consumer.handle_batch(batch)
        assert await consumer_side.totals_by_subject() == {"c1": (5, 1), "c2": (7, 1)}

    async def test_events_published_by_a_failed_handler_are_rolled_back(
        self, consumer_side: Side, note_class: type[EventPayload]
    ) -> None:
        consumer = make_consumer(consumer_side, note_class, "g1")
        original = consumer._registrations[note_class.full_type()].handler

        async def publish_then_fail(uow, note, event):  # type: ignore[no-untyped-def]
            await uow.publish(note_class(note_id="echo", customer_id=note.customer_id, amount=0))
            await original(uow, note, event)

        consumer._registrations[note_class.full_type()].handler = publish_then_fail
        await consumer.handle_batch(
            [delivery(note_class, "c1", 1, poison=True), delivery(note_class, "c2", 1)]
        )
        assert await consumer_side.outbox_count() == 1  # only the successful event's echo

    async def test_events_it_does_not_handle_are_ignored(
        self, consumer_side: Side, note_class: type[EventPayload]
    ) -> None:
        consumer = make_consumer(consumer_side, note_class, "g1")
        other = Delivery(
            event=delivery(note_class, "c1", 1).event.model_copy(update={"type": "crm.other.v1"}), topic="x"
        )
        assert await consumer.handle_batch([other]) == []
        assert not await _in_inbox(consumer_side, "g1", other.event.id)


async def _in_inbox(side: Side, group: str, event_id: str) -> bool:
    inbox = side.messaging.inbox
    async with side.engine.connect() as conn:
        row = await conn.execute(
            select(inbox).where(inbox.c.consumer_group == group, inbox.c.event_id == event_id)
        )
        return row.first() is not None
