"""Segmentation's features, kept current from every event, equal a recompute from the stored facts."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from services.platform import Platform, build_platform
from services.segmentation.models import CustomerFeatures, CustomerSpend

NOW = datetime.now(UTC).replace(microsecond=0)


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


async def purchase(
    gw: httpx.AsyncClient,
    customer_id: str,
    days_ago: int,
    minor: int,
    currency: str = "EUR",
    channel: str = "store",
) -> str:
    response = await gw.post(
        "/api/interactions/purchases",
        json={
            "customer_id": customer_id,
            "currency": currency,
            "channel": channel,
            "occurred_at": (NOW - timedelta(days=days_ago)).isoformat(),
            "lines": [{"sku": "SKU-1", "quantity": 1, "unit_price_minor": minor}],
        },
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def snapshot(platform: Platform) -> tuple[dict[str, dict[str, Any]], list[tuple[Any, ...]]]:
    runtime = platform.runtimes["segmentation"]
    async with runtime.sessions() as session:
        rows = list(await session.scalars(select(CustomerFeatures).order_by(CustomerFeatures.customer_id)))
        spend = list(await session.execute(select(CustomerSpend).order_by(CustomerSpend.customer_id)))
    columns = [c.key for c in CustomerFeatures.__table__.columns if c.key != "updated_at"]
    features = {r.customer_id: {c: getattr(r, c) for c in columns} for r in rows}
    return features, sorted((s.customer_id, s.currency, s.purchase_count, s.total_minor) for (s,) in spend)


async def test_features_follow_every_event_and_equal_a_recompute(
    gw: httpx.AsyncClient, platform: Platform
) -> None:
    ana = await customer(gw, {"given_name": "Ana", "family_name": "Gil", "email": "ana.gil@example.com"})
    ben = await customer(gw, {"given_name": "Ben", "family_name": "Orr", "email": "ben.orr@example.com"})
    first = await purchase(gw, ana, 40, 2000)
    await purchase(gw, ana, 20, 3000, channel="web")
    await purchase(gw, ana, 10, 1000, "USD")
    await purchase(gw, ben, 5, 500)
    refund = await gw.post(
        f"/api/interactions/purchases/{first}/refunds",
        json={"amount_minor": 500, "currency": "EUR", "reason": "damaged", "idempotency_key": "r-1"},
    )
    assert refund.status_code == 201, refund.text
    contact = {"customer_id": ana, "channel": "phone", "kind": "inquiry", "source_system": "callcentre"}
    assert (await gw.post("/api/interactions/interactions", json=contact)).status_code == 201
    complaint = await gw.post(
        "/api/interactions/complaints",
        json={
            "customer_id": ana,
            "channel": "email",
            "priority": "high",
            "category": "billing",
            "subject": "x",
        },
    )
    assert complaint.status_code == 201, complaint.text
    survey = {"customer_id": ana, "channel": "web", "csat": 2, "nps": 3}
    assert (await gw.post("/api/interactions/surveys", json=survey)).status_code == 201
    await platform.drain()

    read = await gw.get(f"/api/segmentation/customers/{ana}/features")
    assert read.status_code == 200, read.text
    f = read.json()
    assert f["purchase_count"] == 3
    assert f["currency"] == "EUR"  # spent most in
    assert (f["total_spend_minor"], f["refunded_minor"], f["net_spend_minor"]) == (5000, 500, 4500)
    assert f["average_order_minor"] == 2500
    assert f["refund_count"] == 1
    assert f["mean_interpurchase_days"] == 15.0  # 30 days over 2 intervals
    assert set(f["channels"]) == {"store", "web", "phone"}
    assert f["multichannel"] is True
    assert f["contact_count"] >= 1
    assert (f["complaint_count"], f["open_complaints"], f["unanswered_complaints"]) == (1, 1, 1)
    assert (f["last_csat"], f["last_nps"], f["nps_category"]) == (2, 3, "detractor")
    assert sorted((s["currency"], s["total_minor"]) for s in f["spend"]) == [("EUR", 5000), ("USD", 1000)]

    complaint_id = complaint.json()["id"]
    acknowledged = await gw.post(
        f"/api/interactions/complaints/{complaint_id}/status", json={"status": "acknowledged"}
    )
    assert acknowledged.status_code == 200, acknowledged.text
    await platform.drain()
    f = (await gw.get(f"/api/segmentation/customers/{ana}/features")).json()
    assert (f["open_complaints"], f["unanswered_complaints"]) == (1, 0)

    incremental = await snapshot(platform)
    recomputed = await gw.post("/api/segmentation/features/recompute")
    assert recomputed.status_code == 200
    assert await snapshot(platform) == incremental


async def test_a_merge_counts_both_customers_facts_for_the_survivor(
    gw: httpx.AsyncClient, platform: Platform
) -> None:
    a = await customer(gw, {"given_name": "Lena", "family_name": "Roth", "email": "lena.roth@example.de"})
    b = await customer(gw, {"given_name": "Lena", "family_name": "Roth", "phone": "+49 151 23456789"})
    await purchase(gw, a, 30, 1000)
    await purchase(gw, b, 10, 2000)
    await platform.drain()
    merged = await gw.post(
        f"/api/identity/customers/{a}/merge", json={"other_id": b, "reason": "same person"}
    )
    assert merged.status_code == 200, merged.text
    await platform.drain()
    f = (await gw.get(f"/api/segmentation/customers/{a}/features")).json()
    assert (f["purchase_count"], f["total_spend_minor"]) == (2, 3000)
    assert (await gw.get(f"/api/segmentation/customers/{b}/features")).json()["customer_id"] == a
