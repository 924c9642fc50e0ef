"""Segmentation on PostgreSQL: features from events, a rule segment (with a time window, a channel and
the value tier) evaluated in SQL, real-time membership, and the population pass (RFM cut points by
`percentile_cont`, tiers, CLV) — the paths SQLite does not exercise."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import delete, func, select, text, update

from services.segmentation import service
from services.segmentation.app import build
from services.segmentation.models import MESSAGING
from services.segmentation.segments import service as segments
from services.segmentation.segments.models import SegmentHistory, SegmentMember
from services.segmentation.segments.schemas import SegmentIn
from services.segmentation.settings import load_settings
from services.segmentation.value import service as value
from services.segmentation.value.models import CustomerValue, LadderHistory
from shared.contracts.interactions import PurchaseLine, PurchaseRecorded
from shared.contracts.segmentation import SegmentEntered, SegmentExited
from shared.contracts.segmentation_value import LadderStageChanged
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
    # One event per move, made in the database: entered before exited, each in customer order.
    async with runtime.sessions() as session:
        published = (
            await session.execute(
                select(MESSAGING.outbox.c.type, MESSAGING.outbox.c.envelope)
                .where(MESSAGING.outbox.c.topic == SegmentEntered.topic.name)
                .order_by(MESSAGING.outbox.c.id)
            )
        ).all()
    events = [
        (SegmentEntered if t == SegmentEntered.full_type() else SegmentExited).model_validate(e["data"])
        for t, e in published
        if e["data"]["segment_id"] == segment_id
    ]
    last = [(type(e).__name__, e.customer_id) for e in events if e.at > since[next(iter(before))]]
    assert last == [("SegmentEntered", c) for c in sorted(after - before)] + [
        ("SegmentExited", c) for c in sorted(before - after)
    ]
    assert all(e.segment_name == "Regulars" and e.cause == "backfill" for e in events)
    assert len(events) == len(moves)


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
        await uow.session.execute(delete(MESSAGING.outbox))
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
    async with runtime.sessions() as session:  # the events, made inside the database, one per move
        published = (
            await session.execute(
                select(MESSAGING.outbox.c.key, MESSAGING.outbox.c.envelope).where(
                    MESSAGING.outbox.c.type == LadderStageChanged.full_type()
                )
            )
        ).all()
    events = [LadderStageChanged.model_validate(envelope["data"]) for _, envelope in published]
    assert sorted((e.customer_id, e.from_stage, e.to_stage) for e in events) == sorted(moves)
    assert all(key == envelope["subject"] == envelope["data"]["customer_id"] for key, envelope in published)
    assert all(e.reason.startswith("up: ") for e in events)

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


async def test_the_set_based_rebuild_equals_the_python_computation(runtime: ServiceRuntime) -> None:
    """`recompute_all` on PostgreSQL is one statement; `_rows` computes the same features in Python (it
    serves the real-time path and SQLite). On data made of the awkward cases — ties between currencies,
    surveys and memberships at the same instant, merged memberships, refunds in another currency,
    facts of customers who never bought, spans that round at the third decimal — the two agree on
    every column of every customer."""
    import random

    from services.segmentation import features
    from services.segmentation.models import (
        ComplaintFact,
        ContactFact,
        CustomerFeatures,
        CustomerSpend,
        LoyaltyMembershipFact,
        LoyaltyPointsFact,
        PurchaseFact,
        ReferralFact,
        RefundFact,
        RegistrationFact,
        SurveyFact,
    )

    rng = random.Random(11)
    base = datetime(2025, 3, 30, 0, 59, 59, 999_999, tzinfo=UTC)  # next to a daylight-saving change
    customers = [f"c{i:03d}" for i in range(120)]
    ids = iter(f"{n:08d}" for n in range(10**6))

    def at() -> datetime:
        return base - timedelta(seconds=rng.choice([0, 216, 3_600, 86_400, 431_999]) * rng.randrange(0, 50))

    rows: dict[type, list[dict[str, object]]] = {}

    def add(model: type, **values: object) -> None:
        rows.setdefault(model, []).append(values)

    for i, customer in enumerate(customers):
        kind = i % 6  # 0: buys in one currency, 1: two (sometimes tied), 2: nothing bought, …
        for _ in range(rng.randrange(0, 7) if kind != 2 else 0):
            currency = rng.choice(["EUR", "USD"]) if kind == 1 else "EUR"
            total = rng.choice([1000, 1000, 2500, 333]) if kind != 3 else 7
            add(
                PurchaseFact,
                purchase_id=next(ids),
                customer_id=customer,
                origin_customer_id=customer,
                occurred_at=at(),
                currency=currency,
                total_minor=total,
                channel=rng.choice(["web", "store", "Web"]),
            )
        for _ in range(rng.randrange(0, 3)):
            add(
                RefundFact,
                refund_id=next(ids),
                purchase_id=next(ids),
                customer_id=customer,
                origin_customer_id=customer,
                occurred_at=at(),
                currency=rng.choice(["EUR", "USD"]),
                amount_minor=rng.randrange(1, 900),
            )
        for _ in range(rng.randrange(0, 3)):
            add(
                ContactFact,
                interaction_id=next(ids),
                customer_id=customer,
                origin_customer_id=customer,
                kind="call",
                channel=rng.choice(["phone", "email", "web"]),
                direction="inbound",
                occurred_at=at(),
            )
        for _ in range(rng.randrange(0, 3)):
            add(
                ComplaintFact,
                complaint_id=next(ids),
                customer_id=customer,
                origin_customer_id=customer,
                opened_at=at(),
                status="open",
                answered=rng.random() < 0.5,
                open=rng.random() < 0.6,
                breaches=rng.randrange(0, 3),
                changed_at=at(),
            )
        tied = base - timedelta(days=3)
        for _ in range(rng.randrange(0, 5)):
            csat, nps = rng.choice([(None, None), (3, None), (None, 6), (5, 9), (1, None), (None, 10)])
            add(
                SurveyFact,
                survey_id=next(ids),
                customer_id=customer,
                origin_customer_id=customer,
                answered_at=tied if rng.random() < 0.5 else at(),
                csat=csat,
                nps=nps,
                overall=None,
            )
        for _ in range(rng.randrange(0, 6)):
            origin = customer if rng.random() < 0.6 else rng.choice(customers)
            add(
                LoyaltyMembershipFact,
                member_id=next(ids),
                customer_id=customer,
                origin_customer_id=origin,
                program_id=rng.choice(["default", "gold-club", "Beta"]),
                enrolled_at=rng.choice([None, tied, tied, base - timedelta(days=9)]),
                tier=rng.choice([None, "silver", "gold"]),
            )
        for _ in range(rng.randrange(0, 2)):
            add(
                ReferralFact,
                referred_customer_id=next(ids),
                program_id="default",
                customer_id=customer,
                origin_customer_id=customer,
                completed_at=at(),
            )
        for _ in range(rng.randrange(0, 3)):
            add(
                LoyaltyPointsFact,
                transaction_id=next(ids),
                customer_id=customer,
                origin_customer_id=customer,
                program_id="default",
                kind=rng.choice(["earned", "redeemed"]),
                points=rng.randrange(1, 500),
                occurred_at=at(),
            )
        if i % 4:
            add(RegistrationFact, origin_customer_id=customer, customer_id=customer, registered_at=at())
            if i % 8 == 1:
                add(
                    RegistrationFact,
                    origin_customer_id=f"merged-{customer}",
                    customer_id=customer,
                    registered_at=at(),
                )
    stale = "c-without-facts"
    async with runtime.uow() as uow:
        for model, values in rows.items():
            await uow.session.execute(model.__table__.insert(), values)  # type: ignore[attr-defined]
        uow.session.add(
            CustomerFeatures(
                customer_id=stale, registered_at=base, erased=True, purchase_count=9, updated_at=base
            )
        )
        await uow.commit()

    async with runtime.uow() as uow:
        expected = await features._rows(uow.session, None)
        spend_expected = {
            (r.customer_id, r.currency): (r.purchase_count, r.total_minor)
            for r in (
                await uow.session.execute(
                    select(
                        PurchaseFact.customer_id.label("customer_id"),
                        PurchaseFact.currency.label("currency"),
                        func.count().label("purchase_count"),
                        func.sum(PurchaseFact.total_minor).label("total_minor"),
                    ).group_by(PurchaseFact.customer_id, PurchaseFact.currency)
                )
            )
        }
        count = await features.recompute_all(uow.session)
        await uow.commit()
    assert count == len(expected) == len(customers) + 1
    async with runtime.sessions() as session:
        stored = {row.customer_id: row for row in await session.scalars(select(CustomerFeatures))}
        spend = {
            (s.customer_id, s.currency): (s.purchase_count, s.total_minor)
            for s in await session.scalars(select(CustomerSpend))
        }
    assert spend == spend_expected
    columns = [c for c in features._empty("x") if c != "customer_id"]
    differences = [
        (customer_id, column, want[column], getattr(stored[customer_id], column))
        for customer_id, want in expected.items()
        for column in columns
        if want[column] != getattr(stored[customer_id], column)
    ]
    assert differences == []
    assert stored[stale].erased  # kept
    assert stored[stale].purchase_count == 0  # and emptied
    # The data did exercise the awkward cases.
    assert any(r["satisfaction_before"] is not None for r in expected.values())
    assert len({r["currency"] for r in expected.values()}) == 3  # EUR, USD, and none
    assert any(r["loyalty_tier"] is not None for r in expected.values())
    assert any(r["mean_interpurchase_days"] not in (None, 0.0) for r in expected.values())


async def test_the_rewritten_tables_leave_room_for_in_place_updates(runtime: ServiceRuntime) -> None:
    """Migration 0009: pages of `customer_value` and `customer_features` keep room for HOT updates."""
    async with runtime.sessions() as session:
        options: dict[str, list[str]] = dict(
            (
                await session.execute(
                    text(
                        "SELECT relname, reloptions FROM pg_class "
                        "WHERE relname IN ('customer_value', 'customer_features')"
                    )
                )
            ).all()
        )
    assert options == {"customer_value": ["fillfactor=50"], "customer_features": ["fillfactor=70"]}


async def test_features_kept_by_the_events_equal_the_set_based_replay(runtime: ServiceRuntime) -> None:
    """The incremental path (purchases one by one and in consumer batches, updated in place where it
    can; refunds, contacts and surveys) and the replay from the facts (`service.recompute`: one
    statement on PostgreSQL) leave the same features and spend per currency for every customer."""
    import random

    from services.segmentation.models import CustomerFeatures, CustomerSpend
    from shared.contracts.interactions import InteractionRecorded, PurchaseRefunded, SurveyAnswered

    rng = random.Random(3)
    now = datetime.now(UTC)
    customers = [str(uuid.uuid4()) for _ in range(25)]
    bought: list[tuple[str, str, str, int]] = []

    def purchase(customer: str) -> PurchaseRecorded:
        total = rng.choice([999, 1500, 2500, 40_000])
        event = PurchaseRecorded(
            purchase_id=str(uuid.uuid4()),
            customer_id=customer,
            channel=rng.choice(["web", "store", "app"]),
            occurred_at=now - timedelta(seconds=rng.randrange(1, 400 * 86_400)),
            currency=rng.choice(["EUR", "EUR", "USD"]),
            total_minor=total,
            lines=[PurchaseLine(sku="SKU-1", quantity=1, unit_price_minor=total)],
        )
        bought.append((event.purchase_id, customer, event.currency, total))
        return event

    for customer in customers:
        for _ in range(rng.randrange(0, 4)):
            async with runtime.uow() as uow:
                await service.on_purchase_recorded(uow, purchase(customer))
                await uow.commit()
    async with runtime.uow() as uow:  # a consumer's batch, several purchases of one customer in it
        await service.on_purchases_recorded(uow, [purchase(rng.choice(customers)) for _ in range(40)])
        await uow.commit()
    for purchase_id, customer, currency, total in rng.sample(bought, 10):
        refund = PurchaseRefunded(
            refund_id=str(uuid.uuid4()),
            purchase_id=purchase_id,
            customer_id=customer,
            occurred_at=now,
            currency=currency,
            amount_minor=total // 3,
            purchase_total_minor=total,
            refunded_total_minor=total // 3,
        )
        async with runtime.uow() as uow:
            await service.on_purchase_refunded(uow, refund)
            await uow.commit()
    for customer in rng.sample(customers, 12):
        contact = InteractionRecorded(
            interaction_id=str(uuid.uuid4()),
            customer_id=customer,
            kind="inquiry",
            channel=rng.choice(["phone", "email"]),
            direction="inbound",
            occurred_at=now - timedelta(days=rng.randrange(30)),
            source_system="callcentre",
        )
        survey = SurveyAnswered(
            survey_id=str(uuid.uuid4()),
            customer_id=customer,
            answered_at=now - timedelta(days=rng.randrange(30)),
            channel="web",
            csat=rng.choice([None, 1, 3, 5]),
            nps=rng.choice([None, 0, 7, 10]),
        )
        async with runtime.uow() as uow:
            await service.on_interaction_recorded(uow, contact)
            await service.on_survey_answered(uow, survey)
            await uow.commit()

    async def state() -> tuple[dict[str, dict[str, Any]], list[tuple[str, str, int, int]]]:
        columns = [c.key for c in CustomerFeatures.__table__.columns if c.key != "updated_at"]
        async with runtime.sessions() as session:
            rows = await session.scalars(select(CustomerFeatures))
            features = {r.customer_id: {c: getattr(r, c) for c in columns} for r in rows}
            spend = await session.scalars(select(CustomerSpend))
            totals = sorted((s.customer_id, s.currency, s.purchase_count, s.total_minor) for s in spend)
        return features, totals

    incremental = await state()
    assert await service.recompute(runtime.uow()) == len(incremental[0])
    assert await state() == incremental
    assert any(f["mean_interpurchase_days"] for f in incremental[0].values())
    assert any(f["refunded_minor"] for f in incremental[0].values())


async def test_predictions_loaded_for_the_pass_are_written_with_the_rest_of_the_row(
    runtime: ServiceRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Many predictions (over `WRITE_BATCH`) go to `clv_load` and the pass's one UPDATE writes them with
    the rest of each row; fewer are written by an UPDATE of their own. Both leave the same predicted
    CLV and tiers (the tier ranks the predicted value)."""
    from services.segmentation.value.models import ClvModel

    now = datetime.now(UTC)
    customers = [str(uuid.uuid4()) for _ in range(30)]
    for i, customer in enumerate(customers):
        for n in range(1 + i % 4):
            await buy(runtime, customer, now - timedelta(days=5 + 37 * n + i), 700 * (1 + i % 7))
    params = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426, "p": 6.25, "q": 3.74, "v": 15.45}
    async with runtime.uow() as uow:
        uow.session.add(ClvModel(fitted_at=now, params=params, customers=30))
        await uow.commit()
    async with runtime.uow() as uow:  # cut points and tier floors (its own fit, if any, is kept)
        await value.recompute_population(uow.session, uow, now=now)
        await uow.commit()

    async def scored(write_batch: int) -> dict[str, tuple[int | None, str]]:
        monkeypatch.setattr(value, "WRITE_BATCH", write_batch)
        async with runtime.uow() as uow:
            await uow.session.execute(
                update(CustomerValue).values(clv_predicted_minor=None, value_tier="rest")
            )
            await value.score_everyone(uow, now=now)
            await uow.commit()
        async with runtime.sessions() as session:
            rows = await session.execute(
                select(CustomerValue.customer_id, CustomerValue.clv_predicted_minor, CustomerValue.value_tier)
            )
            return {c: (p, t) for c, p, t in rows}

    one_by_one = await scored(10_000)
    loaded = await scored(1)
    assert loaded == one_by_one
    assert all(p is not None and p > 0 for p, _ in loaded.values())
    assert len({t for _, t in loaded.values()}) > 1
