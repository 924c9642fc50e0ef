"""The real-time path's caches (PostgreSQL): a customer scored after an event equals the set-based score
given the same cut points; cut points written by another process's scheduled pass (stale cache) are
picked up by the next event; a segment defined after the catalogue was cached is evaluated at once; and
the recompute (set-based hooks) equals the real-time result."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from services.segmentation import service
from services.segmentation.app import build
from services.segmentation.segments import service as segments
from services.segmentation.segments.models import SegmentMember
from services.segmentation.segments.schemas import SegmentIn
from services.segmentation.settings import load_settings
from services.segmentation.value import service as value
from services.segmentation.value.models import CustomerValue, RfmCutpoints
from shared.contracts.interactions import PurchaseLine, PurchaseRecorded
from shared.messaging.bus import InProcessBus


def _purchase(customer: str, at: datetime, amount: int, channel: str = "web") -> PurchaseRecorded:
    return PurchaseRecorded(
        purchase_id=str(uuid.uuid4()),
        customer_id=customer,
        channel=channel,
        occurred_at=at,
        currency="EUR",
        total_minor=amount,
        lines=[PurchaseLine(sku="SKU-1", quantity=1, unit_price_minor=amount)],
    )


async def _values(runtime: Any) -> dict[str, dict[str, Any]]:
    async with runtime.sessions() as session:
        rows = list(await session.scalars(select(CustomerValue).order_by(CustomerValue.customer_id)))
    columns = [c.key for c in CustomerValue.__table__.columns if c.key != "updated_at"]
    return {r.customer_id: {c: getattr(r, c) for c in columns} for r in rows}


async def _members(runtime: Any) -> set[tuple[str, str]]:
    async with runtime.sessions() as session:
        return set(await session.execute(select(SegmentMember.segment_id, SegmentMember.customer_id)))  # type: ignore[arg-type]


async def test_realtime_scoring_equals_the_batch_and_follows_new_cut_points(pg_database: str) -> None:
    runtime = build(load_settings(database_url=pg_database), InProcessBus())
    await runtime.start()
    await runtime.relay.stop()
    now = datetime.now(UTC)
    try:
        customers = [str(uuid.uuid4()) for _ in range(30)]
        for i, customer in enumerate(customers):
            for n in range(1 + i % 4):
                async with runtime.uow() as uow:
                    event = _purchase(customer, now - timedelta(days=5 + 50 * n + 3 * i), 1000 * (i + 1))
                    await service.on_purchase_recorded(uow, event)
                    await uow.commit()
        async with runtime.uow() as uow:
            await value.recompute_population(uow.session, uow)
            await uow.commit()
        regulars = await segments.create(
            runtime.uow(),
            SegmentIn(
                name="Valuable regulars",
                rule={
                    "all": [
                        {"purchases": {"within_days": 365, "at_least": 2}},
                        {"not": {"field": "value_tier", "op": "=", "value": "rest"}},
                    ]
                },
            ),
        )
        await segments.create(
            runtime.uow(),
            SegmentIn(
                name="Web regulars",
                rule={
                    "all": [
                        {"in_segment": regulars.segment.id},
                        {"field": "channels", "op": "contains", "value": "web"},
                    ]
                },
            ),
        )

        # The same instant, the same cut points: one by one (the real-time path) == everyone at once.
        at = datetime.now(UTC)
        async with runtime.uow() as uow:
            await value.score_everyone(uow, now=at)
            await uow.commit()
        batch = await _values(runtime)
        async with runtime.uow() as uow:
            for customer in customers:
                await value.score_customers(uow.session, uow, [customer], now=at)
            await uow.commit()
        assert await _values(runtime) == batch

        # Another process's pass writes new cut points (this process's cache is now stale): the next
        # event is scored against them, exactly as the batch scores it against them.
        async with runtime.sessions() as session:
            cached = value._PARAMETERS.get(session.get_bind())
        assert cached is not None
        later = datetime.now(UTC) + timedelta(seconds=1)
        async with runtime.uow() as uow:
            for dimension, cuts in (("frequency", [1, 1, 1, 1]), ("tier", [10**9, 10**9, 1.0])):
                uow.session.add(
                    RfmCutpoints(dimension=dimension, computed_at=later, cut_points=cuts, population=1)
                )
            await uow.commit()
        target = customers[-1]
        async with runtime.uow() as uow:
            await service.on_purchase_recorded(uow, _purchase(target, datetime.now(UTC), 2500))
            await uow.commit()
        async with runtime.sessions() as session:
            fresh = value._PARAMETERS[session.get_bind()]
        assert fresh.cuts_at == later
        assert fresh.cuts["tier"] == [10**9, 10**9, 1.0]
        realtime = (await _values(runtime))[target]
        assert realtime["value_tier"] == "medium"  # the new floors: nobody reaches top or high
        assert realtime["rfm_f"] == 5  # more than one purchase: above every new frequency cut point
        at = datetime.now(UTC)
        async with runtime.uow() as uow:
            await value.score_customers(uow.session, uow, [target], now=at)
            await uow.commit()
        one = (await _values(runtime))[target]
        async with runtime.uow() as uow:
            await value.score_everyone(uow, now=at)
            await uow.commit()
        assert (await _values(runtime))[target] == one

        # A segment defined after the catalogue was cached is evaluated on the next event.
        big = await segments.create(
            runtime.uow(),
            SegmentIn(name="Big baskets", rule={"field": "net_spend_minor", "op": ">=", "value": 10**6}),
        )
        async with runtime.uow() as uow:
            await service.on_purchase_recorded(uow, _purchase(customers[0], datetime.now(UTC), 10**6))
            await uow.commit()
        assert (big.segment.id, customers[0]) in await _members(runtime)

        # Real time == the recompute (features, value and segments over everyone, set-based). The
        # direct scorings above ran no segment hook: re-evaluate everyone through the real-time path.
        async with runtime.uow() as uow:
            for customer in customers:
                await segments.reevaluate(uow.session, uow, [customer])
            await uow.commit()
        incremental_values, incremental_members = await _values(runtime), await _members(runtime)
        assert await service.recompute(runtime.uow()) == len(customers)
        recomputed = await _values(runtime)
        for customer in customers:  # risk recency and predicted CLV moved with the clock; the rest holds
            for row in (recomputed[customer], incremental_values[customer]):
                for moving in ("risk_score", "risk_reasons", "risk_level", "clv_predicted_minor"):
                    row.pop(moving)
        assert recomputed == incremental_values
        assert await _members(runtime) == incremental_members
    finally:
        await runtime.stop()


async def test_an_events_statements_use_generic_plans_in_its_transaction_only(pg_database: str) -> None:
    """The real-time templates are planned once per connection (a generic plan), not at every event:
    for the event's transaction only — the next transaction plans as PostgreSQL chooses again."""
    from sqlalchemy import text

    runtime = build(load_settings(database_url=pg_database), InProcessBus())
    await runtime.start()
    await runtime.relay.stop()
    try:
        customer = str(uuid.uuid4())
        async with runtime.uow() as uow:
            assert await uow.session.scalar(text("SHOW plan_cache_mode")) == "auto"
            await service.on_purchase_recorded(uow, _purchase(customer, datetime.now(UTC), 1500))
            assert await uow.session.scalar(text("SHOW plan_cache_mode")) == "force_generic_plan"
            await uow.commit()
        async with runtime.uow() as uow:
            assert await uow.session.scalar(text("SHOW plan_cache_mode")) == "auto"
            for _ in range(8):  # past the five custom plans after which a plan may be cached anyway
                await service.on_purchase_recorded(uow, _purchase(customer, datetime.now(UTC), 1500))
            await uow.commit()
        values = await _values(runtime)
        assert values[customer]["clv_historic_minor"] == 1500 * 9
    finally:
        await runtime.stop()
