"""The customer 360 through the gateway on the embedded platform: every part after a purchase, a merged
id answered by the survivor, a sick service leaving only its own part unavailable, and an event making
the next 360 ask again only the services whose parts it can have changed."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import REGISTRY

from services.gateway.upstreams import Upstream
from services.platform import Platform
from tests.support.auth import auth_gateway, auth_platform, authed

pytestmark = pytest.mark.auth  # authentication on: a real login as the bootstrap admin

PURCHASE = {
    "currency": "EUR",
    "channel": "store",
    "lines": [{"sku": "SKU-1", "category": "shoes", "quantity": 2, "unit_price_minor": 4999}],
}


@pytest.fixture
def platform(tmp_path: Path) -> Platform:
    return auth_platform(tmp_path)


@pytest.fixture
def app(platform: Platform, tmp_path: Path) -> FastAPI:
    return auth_gateway(platform, tmp_path, customer360_part_timeout=0.5)


@pytest.fixture
async def gw(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as c,
    ):
        await authed(c)
        yield c


async def customer(gw: httpx.AsyncClient, body: dict[str, Any]) -> str:
    response = await gw.post("/api/identity/customers", json=body)
    assert response.status_code == 201, response.text
    return str(response.json()["customer"]["id"])


async def buyer(gw: httpx.AsyncClient, platform: Platform) -> str:
    ana = await customer(
        gw,
        {
            "given_name": "Ana",
            "family_name": "García",
            "email": "ana@example.com",
            "phone": "+34 600 123 456",
        },
    )
    consent = await gw.put(
        f"/api/identity/customers/{ana}/consents/email/marketing",
        json={"status": "granted", "source": "web_form"},
    )
    assert consent.status_code in (200, 201), consent.text
    bought = await gw.post("/api/interactions/purchases", json={**PURCHASE, "customer_id": ana})
    assert bought.status_code == 201, bought.text
    await platform.drain()
    return ana


def replace_upstream(app: FastAPI, name: str, transport: httpx.AsyncBaseTransport) -> None:
    upstream: Upstream = app.state.upstreams[name]
    upstream.client = httpx.AsyncClient(transport=transport, base_url=f"http://{name}")


class Refusing(httpx.AsyncBaseTransport):
    """A service that is down: every connection is refused."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)


class Hanging(httpx.AsyncBaseTransport):
    """A service that accepts the connection and never answers."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(60)
        return httpx.Response(200, json={})


def failing_app() -> FastAPI:
    broken = FastAPI()

    @broken.api_route("/{path:path}", methods=["GET"])
    async def fail(path: str) -> None:
        raise RuntimeError("boom")

    return broken


async def test_full_360_after_a_purchase(gw: httpx.AsyncClient, platform: Platform) -> None:
    ana = await buyer(gw, platform)
    response = await gw.get(f"/api/customers/{ana}/360")
    assert response.status_code == 200, response.text
    doc = response.json()
    assert doc["parts"] == {
        "identity": "ok",
        "consents": "ok",
        "timeline": "ok",
        "complaints": "ok",
        "value": "ok",
        "segments": "ok",
        "loyalty": "ok",
    }
    assert doc["customer_id"] == ana
    assert doc["resolved_from"] is None
    assert doc["profile"]["email"] == "ana@example.com"
    kinds = {i["kind"] for i in doc["identifiers"]}
    assert {"email", "phone", "loyalty_card"} <= kinds
    assert {(c["channel"], c["purpose"], c["status"]) for c in doc["consents"]["consents"]} >= {
        ("email", "marketing", "granted")
    }
    assert [t["kind"] for t in doc["timeline"]] == ["purchase"]
    assert doc["open_complaints"] == []
    assert doc["value"]["clv"]["historic_minor"] == 9998
    assert doc["risk"]["level"]
    assert doc["ladder_stage"]
    assert isinstance(doc["segments"], list)
    assert doc["loyalty"]["points"] == 99
    assert doc["loyalty"]["memberships"][0]["program_id"] == "default"


async def test_merged_id_answers_with_the_survivor(gw: httpx.AsyncClient, platform: Platform) -> None:
    a = await buyer(gw, platform)
    b = await customer(gw, {"given_name": "Ana", "family_name": "Garcia", "phone": "+34 600 999 999"})
    merged = await gw.post(
        f"/api/identity/customers/{a}/merge", json={"other_id": b, "reason": "same person"}
    )
    assert merged.status_code == 200, merged.text
    await platform.drain()
    doc = (await gw.get(f"/api/customers/{b}/360")).json()
    assert doc["customer_id"] == a
    assert doc["resolved_from"] == b
    assert doc["loyalty"]["points"] == 99


async def test_unknown_and_erased_customers(gw: httpx.AsyncClient, platform: Platform) -> None:
    missing = await gw.get("/api/customers/no-such-customer/360")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    ana = await customer(gw, {"given_name": "Eva", "email": "eva@example.com"})
    assert (await gw.delete(f"/api/identity/customers/{ana}")).status_code == 204
    gone = await gw.get(f"/api/customers/{ana}/360")
    assert gone.status_code == 410
    assert gone.headers["content-type"] == "application/problem+json"


async def test_a_service_down_leaves_its_part_unavailable(
    gw: httpx.AsyncClient, app: FastAPI, platform: Platform
) -> None:
    ana = await buyer(gw, platform)
    replace_upstream(app, "segmentation", Refusing())
    replace_upstream(app, "loyalty", httpx.ASGITransport(app=failing_app(), raise_app_exceptions=False))
    response = await gw.get(f"/api/customers/{ana}/360")
    assert response.status_code == 200, response.text
    doc = response.json()
    assert doc["parts"]["value"] == doc["parts"]["segments"] == "unavailable"
    assert doc["parts"]["loyalty"] == "unavailable"
    assert doc["value"] is doc["risk"] is doc["ladder_stage"] is doc["segments"] is doc["loyalty"] is None
    assert doc["parts"]["identity"] == doc["parts"]["timeline"] == doc["parts"]["consents"] == "ok"
    assert doc["profile"]["id"] == ana
    assert len(doc["timeline"]) == 1


async def test_a_hanging_service_is_cut_off_by_the_part_timeout(
    gw: httpx.AsyncClient, app: FastAPI, platform: Platform
) -> None:
    ana = await buyer(gw, platform)
    replace_upstream(app, "interactions", Hanging())
    started = time.perf_counter()
    response = await gw.get(f"/api/customers/{ana}/360")
    assert time.perf_counter() - started < 3  # the part timeout is 0.5s
    assert response.status_code == 200, response.text
    doc = response.json()
    assert doc["parts"]["timeline"] == doc["parts"]["complaints"] == "unavailable"
    assert doc["timeline"] is None
    assert doc["open_complaints"] is None
    assert doc["parts"]["loyalty"] == "ok"


@pytest.mark.parametrize("transport", [Refusing(), Hanging()], ids=["refused", "hanging"])
async def test_identity_down_is_a_503(
    gw: httpx.AsyncClient, app: FastAPI, platform: Platform, transport: httpx.AsyncBaseTransport
) -> None:
    ana = await buyer(gw, platform)
    replace_upstream(app, "identity", transport)
    started = time.perf_counter()
    response = await gw.get(f"/api/customers/{ana}/360")
    assert time.perf_counter() - started < 3
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert "identity" in response.json()["detail"]


def _hits() -> float:
    return REGISTRY.get_sample_value("crm_gateway_customer360_cache_total", {"outcome": "hit"}) or 0.0


@pytest.fixture
async def kept(platform: Platform, tmp_path: Path) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """A gateway keeping 360s for a minute: only the events it consumes can make one show a change."""
    app = auth_gateway(platform, tmp_path, customer360_cache_seconds=60)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as gw,
    ):
        await authed(gw)
        yield app, gw


async def test_a_kept_360_is_dropped_by_the_events_of_a_change(
    platform: Platform, kept: tuple[FastAPI, httpx.AsyncClient]
) -> None:
    _, gw = kept
    ana = await buyer(gw, platform)
    first = (await gw.get(f"/api/customers/{ana}/360")).json()
    assert first["loyalty"]["points"] == 99
    asked = _hits()
    assert (await gw.get(f"/api/customers/{ana}/360")).json() == first  # kept
    assert _hits() == asked + 1

    bought = await gw.post("/api/interactions/purchases", json={**PURCHASE, "customer_id": ana})
    assert bought.status_code == 201, bought.text
    await platform.drain()
    after = (await gw.get(f"/api/customers/{ana}/360")).json()
    assert [t["kind"] for t in after["timeline"]] == ["purchase", "purchase"]
    assert after["loyalty"]["points"] == 198


class Recording(httpx.AsyncBaseTransport):
    """Passes requests on to a service, noting each GET's path."""

    def __init__(self, inner: httpx.AsyncBaseTransport, name: str, seen: list[str]) -> None:
        self.inner, self.name, self.seen = inner, name, seen

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            self.seen.append(f"{self.name}{request.url.path}")
        return await self.inner.handle_async_request(request)


async def test_an_event_refetches_only_the_parts_it_can_have_changed(
    platform: Platform, kept: tuple[FastAPI, httpx.AsyncClient]
) -> None:
    """A consent change (identity's own event) asks identity again and nobody else; a purchase asks
    everyone but identity, whose answers are reused — and each 360 shows the change."""
    app, gw = kept
    ana = await buyer(gw, platform)
    first = (await gw.get(f"/api/customers/{ana}/360")).json()
    assert first["consents"]["consents"][0]["status"] == "granted"
    seen: list[str] = []
    for name, upstream in app.state.upstreams.items():
        upstream.client._transport = Recording(upstream.client._transport, name, seen)

    withdrawn = await gw.put(
        f"/api/identity/customers/{ana}/consents/email/marketing",
        json={"status": "withdrawn", "source": "web_form"},
    )
    assert withdrawn.status_code == 200, withdrawn.text
    await platform.drain()
    seen.clear()
    after_consent = (await gw.get(f"/api/customers/{ana}/360")).json()
    assert after_consent["consents"]["consents"][0]["status"] == "withdrawn"
    assert sorted(seen) == [f"identity/customers/{ana}", f"identity/customers/{ana}/consents"]
    assert after_consent["loyalty"] == first["loyalty"]

    bought = await gw.post("/api/interactions/purchases", json={**PURCHASE, "customer_id": ana})
    assert bought.status_code == 201, bought.text
    await platform.drain()
    seen.clear()
    after_purchase = (await gw.get(f"/api/customers/{ana}/360")).json()
    assert after_purchase["loyalty"]["points"] == 198
    assert len(after_purchase["timeline"]) == 2
    assert after_purchase["consents"] == after_consent["consents"]
    assert {path.split("/")[0] for path in seen} == {"interactions", "segmentation", "loyalty"}
    assert (await gw.get(f"/api/customers/{ana}/360")).json() == after_purchase  # kept again


async def test_documented_in_openapi(gw: httpx.AsyncClient) -> None:
    document = (await gw.get("/openapi.json")).json()
    operation = document["paths"]["/api/customers/{customer_id}/360"]["get"]
    assert operation["summary"]
    assert {"404", "410", "503"} <= set(operation["responses"])
    assert "Customer360" in document["components"]["schemas"]
