"""A customer's lifecycle across services: merged ids follow the survivor, erasure stops new records,
and the right of access gathers everything every service holds."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.platform import Platform
from tests.support.auth import auth_gateway, auth_platform, authed

pytestmark = pytest.mark.auth  # authentication on: a real login as the bootstrap admin

PURCHASE = {"currency": "EUR", "lines": [{"sku": "SKU-1", "quantity": 1, "unit_price_minor": 2500}]}


@pytest.fixture
def platform(tmp_path: Path) -> Platform:
    return auth_platform(tmp_path)


@pytest.fixture
async def gw(platform: Platform, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    app = auth_gateway(platform, tmp_path)
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://gw") as c,
    ):
        await authed(c)
        yield c


async def customer(gw: httpx.AsyncClient, body: dict[str, Any]) -> str:
    response = await gw.post("/api/identity/customers", json=body)
    assert response.status_code == 201, response.text
    return str(response.json()["customer"]["id"])


async def test_merge_erasure_and_export_across_services(gw: httpx.AsyncClient, platform: Platform) -> None:
    a = await customer(gw, {"given_name": "Lena", "family_name": "Müller", "email": "lena@example.de"})
    b = await customer(gw, {"given_name": "Helga", "family_name": "Schulz", "phone": "+49 151 23456789"})
    assert (
        await gw.post("/api/interactions/purchases", json={**PURCHASE, "customer_id": b})
    ).status_code == 201

    merged = await gw.post(
        f"/api/identity/customers/{a}/merge", json={"other_id": b, "reason": "same household account"}
    )
    assert merged.status_code == 200, merged.text
    await platform.drain()
    # A purchase posted later under the old id is recorded for the survivor.
    late = await gw.post("/api/interactions/purchases", json={**PURCHASE, "customer_id": b})
    assert late.status_code == 201
    assert late.json()["customer_id"] == a

    export = await gw.get(f"/api/customers/{a}/export")
    assert export.status_code == 200, export.text
    document = export.json()
    assert sorted(document["identity"]["member_ids"]) == sorted([a, b])
    purchases = [p for part in document["interactions"].values() for p in part["purchases"]]
    assert len(purchases) == 2
    await platform.drain()
    points = (await gw.get(f"/api/customers/{a}/export")).json()["loyalty"]
    loyalty_total = sum(part["points"] or 0 for part in points.values())
    # Both purchases earned once, for the survivor (the late one was once lost by a relay race).
    assert loyalty_total == 50, points

    assert (await gw.delete(f"/api/identity/customers/{a}")).status_code == 204
    await platform.drain()
    refused = await gw.post("/api/interactions/purchases", json={**PURCHASE, "customer_id": b})
    assert refused.status_code == 422
    assert "erased" in refused.json()["errors"][0]["message"]
    assert (await gw.get(f"/api/customers/{a}/export")).status_code == 410
