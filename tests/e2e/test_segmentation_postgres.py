"""Segmentation on PostgreSQL: features from events, a rule segment (with a time window, a channel and
the value tier) evaluated in SQL, real-time membership, and the population pass (RFM cut points by
`percentile_cont`, tiers, CLV) — the paths SQLite does not exercise."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import delete, select, update

from services.segmentation import service
from services.segmentation.app import build
from services.segmentation.segments import service as segments
from services.segmentation.segments.models import SegmentHistory, SegmentMember
from services.segmentation.segments.schemas import SegmentIn
from services.segmentation.settings import load_settings
from services.segmentation.value import service as value
from services.segmentation.value.models import CustomerValue, LadderHistory
from shared.contracts.interactions import PurchaseLine, PurchaseRecorded
from shared.messaging.bus import InProcessBus
from shared.runtime import ServiceRuntime


async def test_segments_and_value_on_postgres(pg_database: str) -> None:
    runtime = build(load_settings(database_url=pg_database), InProcessBus())
    await runtime.start()
    await runtime.relay.stop()
    now = datetime.now(UTC)
    try:
        customers = [str(uuid.uuid4()) for _ in range(40)]
        for i, customer in enumerate(customers):
            for n in range(1 + i % 5):  # 1 to 5 purchases, bigger for later customers
                event = PurchaseRecorded(
                    purchase_id=str(uuid.uuid4()),
                    customer_id=customer,
                    channel="web" if n % 2 else "store",
                    occurred_at=now - timedelta(days=10 + 40 * n + i),
                    currency="EUR",
                    total_minor=1000 * (i + 1),
                    lines=[PurchaseLine(sku="SKU-1", quantity=1, unit_price_minor=1000 * (i + 1))],
                )
                async with runtime.uow() as uow:
                    await service.on_purchase_recorded(uow, event)
                    await uow.commit()
        async with runtime.uow() as uow:
            await value.recompute_population(uow.session, uow)
            await uow.commit()
        async with runtime.sessions() as session:
            tiers = {v.customer_id: v.value_tier for v in await session.scalars(select(CustomerValue))}
        assert len(tiers) == 40
        assert {t for t in tiers.values()} >= {"top", "rest"}

        rule = {
            "all": [
                {"purchases": {"within_days": 365, "at_least": 3}},
                {"field": "channels", "op": "contains", "value": "web"},
                {"not": {"field": "value_tier", "op": "=", "value": "rest"}},
            ]
        }
        created = await segments.create(runtime.uow(), SegmentIn(name="Valuable regulars", rule=rule))
        expected = {
            c
            for i, c in enumerate(customers)
            if 1 + i % 5 >= 3 and 10 + 40 * 2 + i <= 365 and tiers[c] != "rest"
        }
        async with runtime.sessions() as session:
            members = set(
                await session.scalars(
                    select(SegmentMember.customer_id).where(SegmentMember.segment_id == created.segment.id)
                )
            )
        assert members == expected
        assert members  # the fixture does produce members

        # Real time: a customer with one purchase buys twice more on the web and enters if valuable.
        newcomer = customers[0]
        for _ in range(2):
            event = PurchaseRecorded(
                purchase_id=str(uuid.uuid4()),
                customer_id=newcomer,
                channel="web",
                occurred_at=now,
                currency="EUR",
                total_minor=500_000,
                lines=[PurchaseLine(sku="SKU-9", quantity=1, unit_price_minor=500_000)],
            )
            async with runtime.uow() as uow:
                await service.on_purchase_recorded(uow, event)
                await uow.commit()
        async with runtime.sessions() as session:
            tier = await session.scalar(
                select(CustomerValue.value_tier).where(CustomerValue.customer_id == newcomer)
            )
            member = await session.scalar(
                select(SegmentMember.customer_id).where(
                    SegmentMember.segment_id == created.segment.id, SegmentMember.customer_id == newcomer
                )
            )
        assert (member is not None) == (tier != "rest")
    finally:
        await runtime.stop()


@pytest.fixture
async def runtime(pg_database: str) -> AsyncIterator[ServiceRuntime]:
    started = build(load_settings(database_url=pg_database), InProcessBus())
    await started.start()
    await started.relay.stop()
    try:
        yield started
    finally:
        await started.stop()


async def buy(runtime: ServiceRuntime, customer: str, at: datetime, total: int) -> None:
    """One web purchase of `total` minor units at `at`, through the consumer's handler."""
    event = PurchaseRecorded(
        purchase_id=str(uuid.uuid4()),
        customer_id=customer,
        channel="web",
        occurred_at=at,
        currency="EUR",
        total_minor=total,
        lines=[PurchaseLine(sku="SKU-1", quantity=1, unit_price_minor=total)],
    )
    async with runtime.uow() as uow:
        await service.on_purchase_recorded(uow, event)
        await uow.commit()


async def test_a_rule_change_moves_members_both_ways_in_one_statement(runtime: ServiceRuntime) -> None:
    """The batch path on PostgreSQL (`_apply_once`): members who no longer match leave, customers who
    now match enter, those in both keep their `since`, and the history has one row per move."""
    now = datetime.now(UTC)
    customers = [str(uuid.uuid4()) for _ in range(30)]
    counts = {c: 1 + i % 5 for i, c in enumerate(customers)}
    for customer, count in counts.items():
        for n in range(count):
            await buy(runtime, customer, now - timedelta(days=5 + 30 * n), 1000)
    first = {"purchases": {"within_days": 365, "at_least": 3}}
    created = await segments.create(runtime.uow(), SegmentIn(name="Regulars", rule=first))
    segment_id = created.segment.id
    before = {c for c, n in counts.items() if n >= 3}
    assert created.entered == len(before)
    assert created.exited == 0

    async def members() -> dict[str, datetime]:
        async with runtime.sessions() as session:
            rows = await session.execute(
                select(SegmentMember.customer_id, SegmentMember.since).where(
                    SegmentMember.segment_id == segment_id
                )
            )
            return {c: s for c, s in rows}

    since = await members()
    assert set(since) == before

    second = {"purchases": {"within_days": 365, "at_least": 2, "at_most": 3}}
    changed = await segments.replace(runtime.uow(), segment_id, SegmentIn(name="Regulars", rule=second))
    after = {c for c, n in counts.items() if 2 <= n <= 3}
    assert changed.entered == len(after - before)
    assert changed.exited == len(before - after)
    now_members = await members()
    assert set(now_members) == after
    for kept in after & before:
        assert now_members[kept] == since[kept]
    async with runtime.sessions() as session:
        moves = (
            await session.execute(
                select(SegmentHistory.customer_id, SegmentHistory.change, SegmentHistory.cause).where(
                    SegmentHistory.segment_id == segment_id
                )
            )
        ).all()
    assert sorted(moves) == sorted(
        [(c, "entered", "backfill") for c in before]
        + [(c, "entered", "backfill") for c in after - before]
        + [(c, "exited", "backfill") for c in before - after]
    )


async def test_the_set_based_pass_records_every_ladder_move_once(runtime: ServiceRuntime) -> None:
    """`score_everyone` on PostgreSQL (one UPDATE … RETURNING): every customer whose stage moved gets
    one history row and one event, and a second pass, with nothing moved, records none."""
    now = datetime.now(UTC)
    customers = [str(uuid.uuid4()) for _ in range(12)]
    for i, customer in enumerate(customers):
        for n in range(1 + i % 3):
            await buy(runtime, customer, now - timedelta(days=3 + 20 * n), 1500)
    async with runtime.uow() as uow:  # everyone back to prospect, their history gone
        await uow.session.execute(update(CustomerValue).values(ladder_stage="prospect"))
        await uow.session.execute(delete(LadderHistory))
        await uow.commit()
    async with runtime.uow() as uow:
        changes = await value.score_everyone(uow)
        await uow.commit()
    async with runtime.sessions() as session:
        stages = dict(
            (await session.execute(select(CustomerValue.customer_id, CustomerValue.ladder_stage))).all()
        )
        moves = (
            await session.execute(
                select(LadderHistory.customer_id, LadderHistory.from_stage, LadderHistory.to_stage)
            )
        ).all()
    moved = {c for c, stage in stages.items() if stage != "prospect"}
    assert moved == set(customers)  # everyone bought at least once
    assert changes["ladder_changes"] == len(moved)
    assert sorted(moves) == sorted((c, "prospect", stages[c]) for c in moved)

    async def stamps() -> dict[str, tuple[datetime, int]]:
        async with runtime.sessions() as session:
            rows = await session.execute(
                select(CustomerValue.customer_id, CustomerValue.updated_at, CustomerValue.risk_score)
            )
            return {c: (at, score) for c, at, score in rows}

    before = await stamps()
    tampered = customers[0]
    async with runtime.uow() as uow:  # one stored row out of line with its features
        await uow.session.execute(
            update(CustomerValue).where(CustomerValue.customer_id == tampered).values(risk_score=99)
        )
        await uow.commit()
    async with runtime.uow() as uow:
        again = await value.score_everyone(uow)
        await uow.commit()
    assert again["ladder_changes"] == 0
    after = await stamps()
    # Only the row that differed was written again (and put right); the others kept their stamp.
    assert after[tampered] == (after[tampered][0], before[tampered][1])
    assert after[tampered][0] > before[tampered][0]
    assert {c: v for c, v in after.items() if c != tampered} == {
        c: v for c, v in before.items() if c != tampered
    }
