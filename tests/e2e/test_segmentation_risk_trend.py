"""Survey answers that fall against the customer's own earlier average raise the abandonment risk, with
falling satisfaction among the reasons ("satisfaction fell from 9.0 to 4.0")."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.platform import Platform, build_platform
from services.segmentation.value.service import risk_explanations

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


async def survey(gw: httpx.AsyncClient, customer_id: str, days_ago: int, nps: int) -> None:
    body = {
        "customer_id": customer_id,
        "channel": "web",
        "nps": nps,
        "answered_at": (NOW - timedelta(days=days_ago)).isoformat(),
    }
    response = await gw.post("/api/interactions/surveys", json=body)
    assert response.status_code == 201, response.text


async def risk(gw: httpx.AsyncClient, customer_id: str) -> dict[str, Any]:
    response = await gw.get(f"/api/segmentation/customers/{customer_id}/value")
    assert response.status_code == 200, response.text
    return dict(response.json()["risk"])


async def test_falling_survey_scores_raise_the_risk_with_their_reason(
    gw: httpx.AsyncClient, platform: Platform
) -> None:
    created = await gw.post("/api/identity/customers", json={"given_name": "Ada", "email": "ada@example.com"})
    assert created.status_code == 201, created.text
    ada = str(created.json()["customer"]["id"])
    purchase = {
        "customer_id": ada,
        "currency": "EUR",
        "channel": "store",
        "occurred_at": (NOW - timedelta(days=3)).isoformat(),
        "lines": [{"sku": "SKU-1", "quantity": 1, "unit_price_minor": 4000}],
    }
    assert (await gw.post("/api/interactions/purchases", json=purchase)).status_code == 201
    await survey(gw, ada, 60, 9)
    await survey(gw, ada, 30, 9)
    await platform.drain()
    calm = await risk(gw, ada)
    assert "falling_satisfaction" not in {r["component"] for r in calm["reasons"]}

    await survey(gw, ada, 1, 4)  # 9 and 9 before, 4 now: a fall of 5 points
    await platform.drain()
    worried = await risk(gw, ada)
    reasons = {r["component"]: r["points"] for r in worried["reasons"]}
    assert reasons["falling_satisfaction"] == 15
    assert reasons["low_satisfaction"] == 10  # 4 is also a detractor
    assert worried["score"] == calm["score"] + 25
    sentences = {r["component"]: r["explanation"] for r in worried["reasons"]}
    assert sentences["falling_satisfaction"] == "satisfaction fell from 9.0 to 4.0"

    runtime = platform.runtimes["segmentation"]
    async with runtime.sessions() as session:
        explained = await risk_explanations(session, ada)
    assert ("falling_satisfaction", 15, "satisfaction fell from 9.0 to 4.0") in explained
