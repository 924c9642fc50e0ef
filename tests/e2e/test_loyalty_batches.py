"""Purchases earned as a run (loyalty's batch handler) end exactly where the same events handled one at a
time end: every balance, every ledger transaction, every lot, every membership and tier, and the same
events in the same order, on SQLite and PostgreSQL. The runs are awkward on purpose: two programs (one
enrolling buyers automatically, one with members enrolled beforehand, a tier, a category multiplier
and a daily cap), failed payments, a purchase id delivered twice under two event ids, an event
redelivered, customers never registered, and merges between the runs."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from services.loyalty.app import build
from services.loyalty.models import Account, LedgerTransaction, Lot, Member
from services.loyalty.settings import load_settings
from shared.contracts.identity import CustomerRegistered
from shared.contracts.interactions import PurchaseLine, PurchaseRecorded
from shared.messaging.bus import InProcessBus
from shared.messaging.consumer import Delivery
from shared.metrics import BATCH_ISOLATION_FALLBACKS
from shared.runtime import ServiceRuntime
from tests.support.runs import delivery, merge

NOW = datetime.now(UTC).replace(microsecond=0)
CUSTOMERS = [f"c-{i}" for i in range(20)]
CLUB_MEMBERS = CUSTOMERS[::3]


def scenario(seed: int) -> list[list[Delivery]]:
    rng = random.Random(seed)
    customers = list(CUSTOMERS)
    runs = [
        [
            delivery(CustomerRegistered(customer_id=c, kind="person", status="customer", registered_at=NOW))
            for c in customers[:16]
        ]
    ]
    made = 0
    for run_no in range(3):
        run = []
        for _ in range(rng.randint(25, 45)):
            quantity = rng.randint(1, 3)
            price = rng.randint(500, 9_000)
            run.append(
                delivery(
                    PurchaseRecorded(
                        purchase_id=f"p-{seed}-{made}",
                        customer_id=rng.choice(customers),
                        channel="store",
                        occurred_at=NOW - timedelta(minutes=made),
                        currency="EUR",
                        total_minor=quantity * price,
                        lines=[
                            PurchaseLine(
                                sku="SKU-1",
                                category=rng.choice(["shoes", "socks"]),
                                quantity=quantity,
                                unit_price_minor=price,
                            )
                        ],
                        payment_status="failed" if rng.random() < 0.1 else "paid",
                    )
                )
            )
            made += 1
        again = run[rng.randrange(len(run))].event.data
        run.append(delivery(PurchaseRecorded.model_validate(again)))
        run.append(run[rng.randrange(len(run))])
        rng.shuffle(run)
        runs.append(run)
        survivor, absorbed = rng.sample(customers, 2)
        runs.append([merge(survivor, absorbed, f"m-{run_no}", NOW)])
        customers.remove(absorbed)
    return runs


async def started(url: str) -> ServiceRuntime:
    runtime = build(load_settings(database_url=url), InProcessBus())
    await runtime.start()
    await runtime.relay.stop()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=runtime.app), base_url="http://l") as api:

        async def ok(response: httpx.Response) -> None:
            assert response.status_code in (200, 201), response.text

        await ok(await api.post("/programs", json={"id": "club", "name": "Club", "currency": "EUR"}))
        await ok(
            await api.put(
                "/programs/club/tiers",
                json={
                    "tiers": [
                        {
                            "name": "silver",
                            "threshold": 150,
                            "measure": "qualifying_points",
                            "window": {"kind": "rolling_days", "days": 365},
                            "benefits": {"earn_multiplier": {"numerator": 3, "denominator": 2}},
                        }
                    ]
                },
            )
        )
        await ok(
            await api.post(
                "/programs/club/rules",
                json={
                    "name": "Shoes double",
                    "kind": "multiplier",
                    "definition": {
                        "factor": {"numerator": 2, "denominator": 1},
                        "conditions": {"categories": ["shoes"]},
                    },
                },
            )
        )
        await ok(
            await api.post(
                "/programs/club/rules",
                json={
                    "name": "Daily cap",
                    "kind": "cap",
                    "definition": {"max_points": 400, "period": "day", "applies_to": ["purchase"]},
                },
            )
        )
        for customer in CLUB_MEMBERS:
            await ok(await api.post("/programs/club/members", json={"customer_id": customer}))
    return runtime


async def state(runtime: ServiceRuntime) -> dict[str, Any]:
    """Everything that must agree, keyed by what does not depend on generated ids or the clock."""
    async with runtime.sessions() as session:
        members = {m.id: m for m in await session.scalars(select(Member))}

        def owner(account_id: str) -> str:
            kind, owner_id, what = account_id.split(":")
            if kind == "m":
                return f"m:{members[owner_id].program_id}/{members[owner_id].customer_id}:{what}"
            return account_id

        def named(reference: str) -> str:  # generated member ids in references, by what they stand for
            for member_id, m in members.items():
                reference = reference.replace(member_id, f"{m.program_id}/{m.customer_id}")
            return reference

        balances = {owner(a.id): a.balance for a in await session.scalars(select(Account))}
        ledger = list(await session.scalars(select(LedgerTransaction)))
        by_id = {t.id: named(t.reference) for t in ledger}
        transactions = sorted((t.program_id or "", t.kind, by_id[t.id], t.customer_id or "") for t in ledger)

        def source(text: str) -> str:  # lots name what earned them, some by transaction id
            kind, _, ref = text.partition(":")
            return f"{kind}:{by_id.get(ref, ref)}"

        lots = sorted(
            (
                members[lot.member_id].customer_id,
                lot.program_id,
                source(lot.source),
                lot.points,
                lot.remaining,
                lot.status,
            )
            for lot in await session.scalars(select(Lot))
        )
        memberships = sorted((m.program_id, m.customer_id, m.tier or "", m.status) for m in members.values())
        outbox = runtime.tables.outbox
        events = []
        for (envelope,) in await session.execute(select(outbox.c.envelope).order_by(outbox.c.id)):
            data = envelope["data"]
            events.append(
                (
                    envelope["type"],
                    data.get("customer_id"),
                    data.get("program_id"),
                    data.get("points"),
                    data.get("balance_after"),
                    named(str(data.get("reference"))),
                    data.get("to_tier"),
                )
            )
    return {
        "balances": balances,
        "transactions": transactions,
        "lots": lots,
        "memberships": memberships,
        "events": events,
    }


@pytest.mark.parametrize("seed", [1, 2])
async def test_a_run_of_purchases_earns_exactly_as_one_by_one(
    database_pair: tuple[str, str], seed: int
) -> None:
    one, batched = await started(database_pair[0]), await started(database_pair[1])
    fallbacks = BATCH_ISOLATION_FALLBACKS.labels(batched.consumer.group)
    before = fallbacks._value.get()
    try:
        for run in scenario(seed):
            for d in run:
                assert await one.consumer.handle_batch([d]) == []
            assert await batched.consumer.handle_batch(run) == []
        assert fallbacks._value.get() == before, "the run was not handled as one batch"
        expected, got = await state(one), await state(batched)
    finally:
        await one.stop()
        await batched.stop()
    assert sum(1 for t in expected["transactions"] if t[1] == "earn") >= 40
    assert {m[0] for m in expected["memberships"]} == {"club", "default"}
    assert any(m[2] == "silver" for m in expected["memberships"])
    assert any(e[0].startswith("crm.loyalty.member_enrolled") for e in expected["events"])
    for part in ("balances", "transactions", "lots", "memberships", "events"):
        assert got[part] == expected[part], part
