"""Purchases and points movements handled as a run (the consumer's batch handlers) end exactly where
the same events handled one at a time end: features, spend per currency, value, risk, stage and segment
membership, the ladder history, and every event each customer was announced with, in order — on
SQLite and PostgreSQL. The events are seeded but awkward: customers never registered, a second currency,
a purchase id delivered twice under two event ids, an event redelivered, merges between the runs."""

from __future__ import annotations

import random
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from services.segmentation.app import build
from services.segmentation.models import CustomerFeatures, CustomerSpend
from services.segmentation.segments import service as segments
from services.segmentation.segments.models import Segment, SegmentMember
from services.segmentation.segments.schemas import SegmentIn
from services.segmentation.settings import load_settings
from services.segmentation.value import service as value
from services.segmentation.value.models import CustomerValue, LadderHistory
from shared.contracts.identity import CustomerRegistered
from shared.contracts.interactions import PurchaseLine, PurchaseRecorded
from shared.contracts.loyalty import PointsEarned, PointsRedeemed
from shared.messaging.bus import InProcessBus
from shared.messaging.consumer import Delivery
from shared.metrics import BATCH_ISOLATION_FALLBACKS
from shared.runtime import ServiceRuntime
from tests.support.runs import delivery, merge

NOW = datetime.now(UTC).replace(microsecond=0)
RULES = {
    "Regulars": {"purchases": {"within_days": 365, "at_least": 3}},
    "Web buyers": {"field": "channels", "op": "contains", "value": "web"},
    "Big spenders": {"field": "net_spend_minor", "op": ">=", "value": 40_000},
    "Point collectors": {"field": "points_earned", "op": ">=", "value": 300},
}


def scenario(seed: int) -> list[list[Delivery]]:
    """Runs of deliveries: registrations, then purchases in runs with merges between them."""
    rng = random.Random(seed)
    customers = [f"c-{i}" for i in range(24)]
    runs: list[list[Delivery]] = [
        [
            delivery(CustomerRegistered(customer_id=c, kind="person", status="customer", registered_at=NOW))
            for c in customers[:18]  # the last six are never registered
        ]
    ]

    def purchase(i: int) -> PurchaseRecorded:
        minor = rng.randint(500, 20_000)
        return PurchaseRecorded(
            purchase_id=f"p-{seed}-{i}",
            customer_id=rng.choice(customers),
            channel=rng.choice(["store", "web", "app"]),
            occurred_at=NOW - timedelta(days=rng.randint(0, 700), minutes=i),
            currency="USD" if rng.random() < 0.08 else "EUR",
            total_minor=minor,
            lines=[PurchaseLine(sku="SKU-1", quantity=1, unit_price_minor=minor)],
        )

    made = 0
    for run_no in range(4):
        run = []
        for _ in range(rng.randint(30, 60)):
            run.append(delivery(purchase(made)))
            made += 1
        again = run[rng.randrange(len(run))].event.data
        run.append(delivery(PurchaseRecorded.model_validate(again)))  # same purchase, new event id
        run.append(run[rng.randrange(len(run))])  # the same event redelivered
        rng.shuffle(run)
        runs.append(run)
        points: list[Delivery] = []
        for i in range(rng.randint(10, 30)):  # points events, a run of their own (another topic)
            common = {
                "customer_id": rng.choice(customers),
                "transaction_id": f"t-{seed}-{run_no}-{i}",
                "points": rng.randint(1, 200),
                "balance_after": 0,
                "occurred_at": NOW,
            }
            if rng.random() < 0.8:
                points.append(delivery(PointsEarned(**common, reason="purchase", program_id="club")))
            else:
                points.append(delivery(PointsRedeemed(**common, program_id="club")))
        first = points[0].event
        payload_class = PointsEarned if first.type == PointsEarned.full_type() else PointsRedeemed
        points.append(delivery(payload_class.model_validate(first.data)))  # same movement, new event id
        runs.append(points)
        survivor, absorbed = rng.sample(customers, 2)
        runs.append([merge(survivor, absorbed, f"m-{run_no}", NOW)])
        customers.remove(absorbed)
    return runs


async def started(url: str) -> ServiceRuntime:
    runtime = build(load_settings(database_url=url), InProcessBus())
    await runtime.start()
    await runtime.relay.stop()
    for name, rule in RULES.items():
        await segments.create(runtime.uow(), SegmentIn(name=name, rule=rule))
    return runtime


async def state(runtime: ServiceRuntime) -> dict[str, Any]:
    def rows(objects: Sequence[Any], key: Any, skip: set[str]) -> dict[Any, dict[str, Any]]:
        return {
            key(o): {c: getattr(o, c) for c in o.__table__.columns.keys() if c not in skip}  # noqa: SIM118
            for o in objects
        }

    async with runtime.sessions() as session:
        features = (await session.scalars(select(CustomerFeatures))).all()
        spend = (await session.scalars(select(CustomerSpend))).all()
        value = (await session.scalars(select(CustomerValue))).all()
        names = {s.id: s.name for s in await session.scalars(select(Segment))}
        members = {(names[m.segment_id], m.customer_id) for m in await session.scalars(select(SegmentMember))}
        outbox = runtime.tables.outbox
        events: dict[str, list[tuple[Any, ...]]] = {}
        for (envelope,) in await session.execute(select(outbox.c.envelope).order_by(outbox.c.id)):
            # Per customer: stage changes in order, the rest as a multiset; ids and instants differ.
            data = envelope["data"]
            kind = "ladder" if "ladder" in envelope["type"] else "other"
            events.setdefault(f"{data['customer_id']}/{kind}", []).append(
                (
                    envelope["type"],
                    data.get("segment_name"),
                    data.get("cause"),
                    data.get("from_stage"),
                    data.get("to_stage"),
                    data.get("reason"),
                    data.get("risk_score"),
                )
            )
        for key in events:  # segments of one evaluation come in an order of their (random) ids
            if key.endswith("/other"):
                events[key].sort(key=repr)
        history = sorted(
            (h.customer_id, h.from_stage or "", h.to_stage, h.reason)
            for h in await session.scalars(select(LadderHistory))
        )
    return {
        "events": events,
        "ladder": history,
        "features": rows(features, lambda o: o.customer_id, {"updated_at"}),
        "spend": rows(spend, lambda o: (o.customer_id, o.currency), set()),
        "value": rows(value, lambda o: o.customer_id, {"updated_at"}),
        "members": members,
    }


@pytest.mark.parametrize("seed", [1, 2])
async def test_a_run_of_purchases_ends_where_one_by_one_ends(
    database_pair: tuple[str, str], seed: int
) -> None:
    one_url, runs_url = database_pair
    one, batched = await started(one_url), await started(runs_url)
    fallbacks = BATCH_ISOLATION_FALLBACKS.labels(batched.consumer.group)
    fallbacks_before = fallbacks._value.get()
    try:
        for number, run in enumerate(scenario(seed)):
            for d in run:
                assert await one.consumer.handle_batch([d]) == []
            assert await batched.consumer.handle_batch(run) == []
            if number == 1:  # after the first purchases: cut points, tiers and a CLV model for both
                for runtime in (one, batched):
                    async with runtime.uow() as uow:
                        await value.recompute_population(uow.session, uow, now=NOW)
                        await uow.commit()
        assert fallbacks._value.get() == fallbacks_before, "the run was not handled as one batch"
        expected, got = await state(one), await state(batched)
    finally:
        await one.stop()
        await batched.stop()
    assert len(expected["features"]) >= 15
    assert len({v["value_tier"] for v in expected["value"].values()}) >= 2  # the population pass ran
    assert any(currency == "USD" for _, currency in expected["spend"])
    assert {name for name, _ in expected["members"]} == set(RULES)
    assert sum(len(e) for e in expected["events"].values()) >= 50
    assert any(
        t[0].startswith("crm.segmentation.segment_exited") for e in expected["events"].values() for t in e
    )
    for part in ("features", "spend", "value", "members", "ladder", "events"):
        assert got[part] == expected[part], part


async def test_a_lone_purchase_still_goes_through_the_one_event_handler(tmp_path: Path) -> None:
    runtime = await started(f"sqlite+aiosqlite:///{tmp_path / 'seg.db'}")
    try:
        calls: list[int] = []
        registration = runtime.consumer._registrations[PurchaseRecorded.full_type()]
        batch = registration.batch
        assert batch is not None

        async def counting(uow: Any, payloads: list[Any], events: list[Any]) -> None:
            calls.append(len(payloads))
            await batch(uow, payloads, events)

        registration.batch = counting
        purchase = scenario(3)[1][0]
        assert await runtime.consumer.handle_batch([purchase]) == []
        assert calls == []
        second = delivery(
            PurchaseRecorded.model_validate({**purchase.event.data, "purchase_id": str(uuid.uuid4())})
        )
        third = delivery(
            PurchaseRecorded.model_validate({**purchase.event.data, "purchase_id": str(uuid.uuid4())})
        )
        assert await runtime.consumer.handle_batch([second, third]) == []
        assert calls == [2]
        async with runtime.sessions() as session:
            row = await session.get(CustomerFeatures, purchase.event.data["customer_id"])
        assert row is not None
        assert row.purchase_count == 3
    finally:
        await runtime.stop()
