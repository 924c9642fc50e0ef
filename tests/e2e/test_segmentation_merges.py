"""Segmentation follows identity's merges and unmerges: a merge counts the absorbed customer's facts for
the survivor; an unmerge gives each customer back exactly the facts recorded for it, so both end as if
they had never been merged (the same features as a world without the merge, and as a recompute), and a
second delivery of the unmerge changes nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from services.platform import Platform, build_platform
from services.segmentation import service
from services.segmentation.app import build
from services.segmentation.models import CustomerFeatures, CustomerSpend, MergedCustomer
from services.segmentation.settings import load_settings
from services.segmentation.value.models import CustomerValue
from shared.contracts.identity import CustomerMerged, CustomerRegistered, CustomerUnmerged
from shared.contracts.interactions import (
    ComplaintOpened,
    InteractionRecorded,
    PurchaseLine,
    PurchaseRecorded,
    PurchaseRefunded,
    SurveyAnswered,
)
from shared.events.envelope import EventPayload
from shared.messaging.bus import InProcessBus
from shared.runtime import ServiceRuntime

NOW = datetime.now(UTC).replace(microsecond=0)
A, B = "cust-a", "cust-b"

Snapshot = tuple[dict[str, dict[str, Any]], list[tuple[Any, ...]], dict[str, tuple[Any, ...]]]


def ago(days: int) -> datetime:
    return NOW - timedelta(days=days)


def bought(
    purchase_id: str, customer_id: str, days: int, minor: int, currency: str = "EUR"
) -> PurchaseRecorded:
    return PurchaseRecorded(
        purchase_id=purchase_id,
        customer_id=customer_id,
        channel="web" if currency == "USD" else "store",
        occurred_at=ago(days),
        currency=currency,
        total_minor=minor,
        lines=[PurchaseLine(sku="SKU-1", quantity=1, unit_price_minor=minor)],
    )


def refunded(customer_id: str) -> PurchaseRefunded:
    return PurchaseRefunded(
        refund_id="r-b1",
        purchase_id="p-b1",
        customer_id=customer_id,
        occurred_at=ago(80),
        currency="EUR",
        amount_minor=1500,
        refunded_total_minor=1500,
        purchase_total_minor=5000,
    )


def surveyed(survey_id: str, customer_id: str, days: int, **scores: int) -> SurveyAnswered:
    return SurveyAnswered(
        survey_id=survey_id, customer_id=customer_id, answered_at=ago(days), channel="web", **scores
    )


MERGE = CustomerMerged(customer_id=A, merged_id=B, merge_id="m-1", method="manual", merged_at=ago(50))
UNMERGE = CustomerUnmerged(customer_id=A, restored_id=B, merge_id="m-1", unmerged_at=NOW)
BEFORE_MERGE: list[EventPayload] = [
    CustomerRegistered(customer_id=A, kind="person", status="customer", registered_at=ago(400)),
    CustomerRegistered(customer_id=B, kind="person", status="customer", registered_at=ago(500)),
    bought("p-a1", A, 60, 3000),
    bought("p-a2", A, 20, 1000),
    bought("p-b1", B, 90, 5000),
    surveyed("s-b1", B, 100, nps=9),
    surveyed("s-a1", A, 40, csat=5),
]
# Events about B that reach segmentation after the merge (late deliveries name B).
AFTER_MERGE: list[EventPayload] = [
    bought("p-b2", B, 30, 2000, "USD"),
    InteractionRecorded(
        interaction_id="i-b1",
        customer_id=B,
        kind="inquiry",
        channel="phone",
        direction="inbound",
        occurred_at=ago(25),
        source_system="callcentre",
    ),
    ComplaintOpened(
        complaint_id="c-b1",
        customer_id=B,
        channel="email",
        priority="high",
        category="billing",
        opened_at=ago(24),
        first_response_due=ago(23),
        resolution_due=ago(20),
    ),
    surveyed("s-b2", B, 10, nps=3),
]


async def deliver(runtime: ServiceRuntime, events: Sequence[EventPayload]) -> None:
    handlers: dict[type[EventPayload], Any] = {
        CustomerRegistered: service.on_customer_registered,
        CustomerMerged: service.on_customer_merged,
        CustomerUnmerged: service.on_customer_unmerged,
        PurchaseRecorded: service.on_purchase_recorded,
        PurchaseRefunded: service.on_purchase_refunded,
        InteractionRecorded: service.on_interaction_recorded,
        ComplaintOpened: service.on_complaint_opened,
        SurveyAnswered: service.on_survey_answered,
    }
    for event in events:
        async with runtime.uow() as uow:
            await handlers[type(event)](uow, event)
            await uow.commit()


async def snapshot(runtime: ServiceRuntime) -> Snapshot:
    async with runtime.sessions() as session:
        rows = list(await session.scalars(select(CustomerFeatures).order_by(CustomerFeatures.customer_id)))
        spend = list(await session.scalars(select(CustomerSpend)))
        values = list(await session.scalars(select(CustomerValue)))
    columns = [c.key for c in CustomerFeatures.__table__.columns if c.key != "updated_at"]
    return (
        {r.customer_id: {c: getattr(r, c) for c in columns} for r in rows},
        sorted((s.customer_id, s.currency, s.purchase_count, s.total_minor) for s in spend),
        {v.customer_id: (v.currency, v.clv_historic_minor, v.value_tier, v.active, v.lapsed) for v in values},
    )


async def runtime_on(url: str) -> ServiceRuntime:
    runtime = build(load_settings(database_url=url), InProcessBus())
    await runtime.start()
    await runtime.relay.stop()
    return runtime


async def test_an_unmerge_gives_each_customer_its_own_facts_back(tmp_path: Path) -> None:
    await unmerge_round_trip(
        f"sqlite+aiosqlite:///{tmp_path / 'merged.db'}", f"sqlite+aiosqlite:///{tmp_path / 'plain.db'}"
    )


async def test_an_unmerge_gives_each_customer_its_own_facts_back_on_postgres(
    pg_database: str, pg_database_2: str
) -> None:
    await unmerge_round_trip(pg_database, pg_database_2)


async def unmerge_round_trip(merged_url: str, plain_url: str) -> None:
    """Events into two databases, one with a merge then its unmerge (twice), one without."""
    merged, plain = await runtime_on(merged_url), await runtime_on(plain_url)
    try:
        await deliver(merged, [*BEFORE_MERGE, MERGE, *AFTER_MERGE, refunded(A)])
        # The refund came after the merge and names the survivor; it still belongs to B's purchase.
        a, _ = await service.features_of(merged.uow(), A)
        assert (a.purchase_count, a.refund_count, a.contact_count, a.complaint_count) == (4, 1, 1, 1)
        assert a.registered_at == ago(500)  # tenure from the earliest registration
        # Earlier surveys: NPS 9 and CSAT 5 (→ 10), average 9.5; the latest NPS 3.
        assert (a.satisfaction_before, a.satisfaction_latest) == (9.5, 3.0)
        b, _ = await service.features_of(merged.uow(), B)
        assert b.customer_id == A  # B resolves to the survivor
        assert set((await snapshot(merged))[2]) == {A}  # B's value row went with the merge

        await deliver(merged, [UNMERGE])
        once = await snapshot(merged)
        await deliver(merged, [UNMERGE])  # delivered again: nothing changes
        assert await snapshot(merged) == once

        features, spend, values = once
        assert set(features) == {A, B}
        assert (features[A]["purchase_count"], features[A]["total_spend_minor"]) == (2, 4000)
        assert features[A]["registered_at"] == ago(400)
        assert (features[A]["contact_count"], features[A]["complaint_count"]) == (0, 0)
        assert (features[B]["purchase_count"], features[B]["refund_count"]) == (2, 1)
        assert (features[B]["currency"], features[B]["net_spend_minor"]) == ("EUR", 3500)
        assert (features[B]["contact_count"], features[B]["open_complaints"]) == (1, 1)
        assert (features[B]["last_nps"], features[B]["satisfaction_before"]) == (3, 9.0)
        assert features[B]["registered_at"] == ago(500)
        assert [s for s in spend if s[0] == B] == [(B, "EUR", 1, 5000), (B, "USD", 1, 2000)]
        assert set(values) == {A, B}
        async with merged.sessions() as session:
            assert list(await session.scalars(select(MergedCustomer))) == []
        b, _ = await service.features_of(merged.uow(), B)
        assert b.customer_id == B

        # Identical to a recompute from the facts, and to a world where the merge never happened.
        assert await service.recompute(merged.uow()) == 2
        assert await snapshot(merged) == once
        await deliver(plain, [*BEFORE_MERGE, *AFTER_MERGE, refunded(B)])
        assert (await snapshot(plain))[:2] == once[:2]
        assert (await snapshot(plain))[2] == once[2]
    finally:
        await merged.stop()
        await plain.stop()


async def test_an_unmerge_restores_a_chain_merged_into_the_restored_customer(tmp_path: Path) -> None:
    runtime = await runtime_on(f"sqlite+aiosqlite:///{tmp_path / 'chain.db'}")
    c = "cust-c"
    try:
        await deliver(
            runtime, [bought("p-a", A, 10, 100), bought("p-b", B, 11, 200), bought("p-c", c, 12, 400)]
        )
        # C into B, then B (with C) into A; a purchase named C arrives late.
        await deliver(
            runtime,
            [
                CustomerMerged(customer_id=B, merged_id=c, merge_id="m-1", method="manual", merged_at=NOW),
                CustomerMerged(customer_id=A, merged_id=B, merge_id="m-2", method="manual", merged_at=NOW),
                bought("p-c2", c, 1, 800),
            ],
        )
        a, _ = await service.features_of(runtime.uow(), A)
        assert (a.purchase_count, a.total_spend_minor) == (4, 1500)
        await deliver(
            runtime, [CustomerUnmerged(customer_id=A, restored_id=B, merge_id="m-2", unmerged_at=NOW)]
        )
        features, _, _ = await snapshot(runtime)
        assert set(features) == {A, B}
        assert (features[A]["purchase_count"], features[A]["total_spend_minor"]) == (1, 100)
        assert (features[B]["purchase_count"], features[B]["total_spend_minor"]) == (3, 1400)
        c_features, _ = await service.features_of(runtime.uow(), c)
        assert c_features.customer_id == B  # C is still part of B
        await deliver(
            runtime, [CustomerUnmerged(customer_id=B, restored_id=c, merge_id="m-1", unmerged_at=NOW)]
        )
        features, _, _ = await snapshot(runtime)
        assert {k: (f["purchase_count"], f["total_spend_minor"]) for k, f in features.items()} == {
            A: (1, 100),
            B: (1, 200),
            c: (2, 1200),
        }
    finally:
        await runtime.stop()


# -- through the platform: identity's merge and unmerge reach segmentation ---------------------------


@pytest.fixture
def platform(tmp_path: Path) -> Platform:
    return build_platform(var_dir=tmp_path)


@pytest.fixture
async def gw(platform: Platform) -> AsyncIterator[httpx.AsyncClient]:
    app = platform.gateway()
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as c,
    ):
        yield c


async def customer(gw: httpx.AsyncClient, body: dict[str, Any]) -> str:
    response = await gw.post("/api/identity/customers", json=body)
    assert response.status_code == 201, response.text
    return str(response.json()["customer"]["id"])


async def purchase(gw: httpx.AsyncClient, customer_id: str, days_ago: int, minor: int) -> None:
    response = await gw.post(
        "/api/interactions/purchases",
        json={
            "customer_id": customer_id,
            "currency": "EUR",
            "channel": "store",
            "occurred_at": ago(days_ago).isoformat(),
            "lines": [{"sku": "SKU-1", "quantity": 1, "unit_price_minor": minor}],
        },
    )
    assert response.status_code == 201, response.text


async def test_identity_unmerge_splits_the_features_again(gw: httpx.AsyncClient, platform: Platform) -> None:
    a = await customer(gw, {"given_name": "Lena", "family_name": "Roth", "email": "lena.roth@example.de"})
    b = await customer(gw, {"given_name": "Lena", "family_name": "Roth", "phone": "+49 151 23456789"})
    await purchase(gw, a, 30, 1000)
    await purchase(gw, a, 20, 1000)
    await purchase(gw, b, 10, 2000)
    await platform.drain()
    merged = await gw.post(f"/api/identity/customers/{a}/merge", json={"other_id": b, "reason": "same"})
    assert merged.status_code == 200, merged.text
    await platform.drain()
    f = (await gw.get(f"/api/segmentation/customers/{a}/features")).json()
    assert (f["purchase_count"], f["total_spend_minor"]) == (3, 4000)

    undone = await gw.post(f"/api/identity/customers/{a}/unmerge", json={"merge_id": merged.json()["id"]})
    assert undone.status_code == 200, undone.text
    await platform.drain()
    mine = (await gw.get(f"/api/segmentation/customers/{a}/features")).json()
    theirs = (await gw.get(f"/api/segmentation/customers/{b}/features")).json()
    assert (mine["customer_id"], mine["purchase_count"], mine["total_spend_minor"]) == (a, 2, 2000)
    assert (theirs["customer_id"], theirs["purchase_count"], theirs["total_spend_minor"]) == (b, 1, 2000)
    value = await gw.get(f"/api/segmentation/customers/{b}/value")
    assert value.status_code == 200, value.text
    assert value.json()["clv"]["historic_minor"] == 2000

    runtime = platform.runtimes["segmentation"]
    before = await snapshot(runtime)
    assert (await gw.post("/api/segmentation/features/recompute")).status_code == 200
    assert (await snapshot(runtime))[:2] == before[:2]
