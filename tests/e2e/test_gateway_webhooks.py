"""Webhooks on the embedded platform: a purchase reaches a subscriber signed, a failing receiver is
retried with backoff and every attempt logged, a redelivered event is delivered once, and a
subscriber that never recovers is given up on."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request, Response
from sqlalchemy import func, select

from services.gateway import app as gateway_app
from services.gateway.settings import load_settings as gateway_settings
from services.gateway.webhooks.hub import WebhookHub
from services.gateway.webhooks.models import subscriptions
from services.gateway.webhooks.signing import verify
from services.platform import Platform, build_platform
from shared.contracts.interactions import PurchaseRecorded
from shared.events.envelope import CloudEvent
from shared.messaging.bus import OutboundMessage
from shared.messaging.consumer import Delivery

PURCHASE = {"currency": "EUR", "lines": [{"sku": "SKU-1", "quantity": 1, "unit_price_minor": 2500}]}
PURCHASED = "crm.interactions.purchase_recorded.v1"
EARNED = "crm.loyalty.points_earned.v1"
HOOK = "http://127.0.0.1/hook"


@dataclass
class Receiver:
    """A subscriber's endpoint: records what it gets; answers with `statuses` in turn, then 200."""

    statuses: list[int] = field(default_factory=list)
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)

    def app(self) -> FastAPI:
        receiver = FastAPI()

        @receiver.post("/hook")
        async def hook(request: Request) -> Response:
            self.received.append((dict(request.headers), await request.body()))
            status = self.statuses.pop(0) if self.statuses else 200
            return Response(status_code=status)

        return receiver

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(body) for _, body in self.received]


@pytest.fixture
def receiver() -> Receiver:
    return Receiver()


@pytest.fixture
def platform(tmp_path: Path) -> Platform:
    return build_platform(var_dir=tmp_path)


@pytest.fixture
def app(platform: Platform, tmp_path: Path, receiver: Receiver) -> FastAPI:
    settings = gateway_settings(
        var_dir=tmp_path,
        webhooks_allow_http_localhost=True,
        webhook_backoff_seconds=0.05,
        webhook_poll_interval=0.02,
        webhook_max_attempts=3,
        webhook_subscriptions_refresh_seconds=0.05,
    )
    return platform.gateway(settings, webhook_transport=httpx.ASGITransport(app=receiver.app()))


@pytest.fixture
async def gw(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as c,
    ):
        yield c


async def subscribe(gw: httpx.AsyncClient, *types: str, url: str = HOOK) -> dict[str, Any]:
    response = await gw.post("/api/webhooks/subscriptions", json={"url": url, "event_types": list(types)})
    assert response.status_code == 201, response.text
    return dict(response.json())


async def customer(gw: httpx.AsyncClient) -> str:
    response = await gw.post(
        "/api/identity/customers", json={"given_name": "Ana", "email": "ana@example.com"}
    )
    assert response.status_code == 201, response.text
    return str(response.json()["customer"]["id"])


async def until(predicate: Callable[[], Any], timeout: float = 10) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.02)


async def deliveries(gw: httpx.AsyncClient, subscription_id: str) -> list[dict[str, Any]]:
    response = await gw.get(f"/api/webhooks/subscriptions/{subscription_id}/deliveries")
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


async def test_a_purchase_reaches_the_subscriber_signed(
    gw: httpx.AsyncClient, platform: Platform, receiver: Receiver
) -> None:
    subscription = await subscribe(gw, PURCHASED, EARNED)
    secret = subscription["secret"]
    assert secret.startswith("whsec_")
    ana = await customer(gw)
    bought = await gw.post("/api/interactions/purchases", json={**PURCHASE, "customer_id": ana})
    assert bought.status_code == 201, bought.text
    await platform.drain()
    await until(lambda: len(receiver.received) == 2)

    assert sorted(e["type"] for e in receiver.events()) == [PURCHASED, EARNED]
    for headers, body in receiver.received:
        assert verify(secret, body, headers["x-crm-signature"])
        assert not verify("whsec_wrong", body, headers["x-crm-signature"])
        event = json.loads(body)
        assert headers["x-crm-event-id"] == event["id"]
        assert headers["content-type"] == "application/cloudevents+json"
        assert event["subject"] == ana
        assert event["specversion"] == "1.0"
    purchase_event = next(e for e in receiver.events() if e["type"] == PURCHASED)
    assert purchase_event["data"]["purchase_id"] == bought.json()["id"]

    log = await deliveries(gw, subscription["id"])
    assert {d["status"] for d in log} == {"delivered"}
    assert [len(d["attempt_log"]) for d in log] == [1, 1]
    # The secret is shown once: never listed or read again.
    listed = (await gw.get("/api/webhooks/subscriptions")).json()["items"]
    assert [s["id"] for s in listed] == [subscription["id"]]
    assert "secret" not in listed[0]
    assert "secret" not in (await gw.get(f"/api/webhooks/subscriptions/{subscription['id']}")).json()


async def test_a_failing_receiver_is_retried_and_every_attempt_logged(
    gw: httpx.AsyncClient, platform: Platform, receiver: Receiver
) -> None:
    receiver.statuses = [500, 500]
    subscription = await subscribe(gw, PURCHASED)
    ana = await customer(gw)
    assert (
        await gw.post("/api/interactions/purchases", json={**PURCHASE, "customer_id": ana})
    ).status_code == 201
    await platform.drain()
    await until(lambda: len(receiver.received) == 3)
    await asyncio.sleep(0.1)
    (delivery,) = await deliveries(gw, subscription["id"])
    assert delivery["status"] == "delivered"
    assert delivery["attempts"] == 3
    assert [a["status_code"] for a in delivery["attempt_log"]] == [500, 500, 200]
    assert [a["attempt"] for a in delivery["attempt_log"]] == [1, 2, 3]
    assert delivery["attempt_log"][0]["error"] == "HTTP 500"
    times = [a["attempted_at"] for a in delivery["attempt_log"]]
    assert times == sorted(times)
    # Every attempt carried the same event id: the receiver can deduplicate.
    assert len({headers["x-crm-event-id"] for headers, _ in receiver.received}) == 1
    assert [headers["x-crm-attempt"] for headers, _ in receiver.received] == ["1", "2", "3"]


async def test_a_receiver_that_never_recovers_is_given_up_on(
    gw: httpx.AsyncClient, platform: Platform, receiver: Receiver
) -> None:
    receiver.statuses = [503] * 10
    subscription = await subscribe(gw, PURCHASED)
    ana = await customer(gw)
    assert (
        await gw.post("/api/interactions/purchases", json={**PURCHASE, "customer_id": ana})
    ).status_code == 201
    await platform.drain()
    await until(lambda: len(receiver.received) == 3)
    await asyncio.sleep(0.3)
    assert len(receiver.received) == 3  # max attempts
    (delivery,) = await deliveries(gw, subscription["id"])
    assert delivery["status"] == "failed"
    assert delivery["next_attempt_at"] is None
    failed = await gw.get(f"/api/webhooks/subscriptions/{subscription['id']}/deliveries?status=failed")
    assert len(failed.json()["items"]) == 1


async def test_an_event_delivered_twice_to_the_gateway_is_sent_once(
    gw: httpx.AsyncClient, app: FastAPI, platform: Platform, receiver: Receiver
) -> None:
    subscription = await subscribe(gw, PURCHASED)
    ana = await customer(gw)
    assert (
        await gw.post("/api/interactions/purchases", json={**PURCHASE, "customer_id": ana})
    ).status_code == 201
    await platform.drain()
    await until(lambda: len(receiver.received) == 1)
    event = CloudEvent.model_validate(receiver.events()[0])
    hub: WebhookHub = app.state.webhooks
    # Redelivered through the bus (as after a relay crash) and straight to the consumer, twice.
    await platform.bus.publish([OutboundMessage(topic=PurchaseRecorded.topic.name, event=event)])
    for _ in range(2):
        assert (
            await hub.consumer.handle_batch([Delivery(event=event, topic=PurchaseRecorded.topic.name)]) == []
        )
    await asyncio.sleep(0.3)
    assert len(receiver.received) == 1
    assert len(await deliveries(gw, subscription["id"])) == 1


async def test_only_chosen_types_and_live_subscriptions_get_events(
    gw: httpx.AsyncClient, platform: Platform, receiver: Receiver
) -> None:
    earned = await subscribe(gw, EARNED)
    removed = await subscribe(gw, PURCHASED)
    assert (await gw.delete(f"/api/webhooks/subscriptions/{removed['id']}")).status_code == 204
    assert (await gw.get(f"/api/webhooks/subscriptions/{removed['id']}")).status_code == 404
    assert (await gw.delete(f"/api/webhooks/subscriptions/{removed['id']}")).status_code == 404
    ana = await customer(gw)
    assert (
        await gw.post("/api/interactions/purchases", json={**PURCHASE, "customer_id": ana})
    ).status_code == 201
    await platform.drain()
    await until(lambda: len(receiver.received) == 1)
    await asyncio.sleep(0.2)
    assert [e["type"] for e in receiver.events()] == [EARNED]
    assert len(await deliveries(gw, earned["id"])) == 1


async def _inbox_rows(hub: WebhookHub) -> int:
    async with hub.uow() as uow:
        inbox = hub.consumer._inbox
        return int((await uow.session.execute(select(func.count()).select_from(inbox))).scalar_one())


async def test_events_no_subscription_wants_are_passed_over_and_other_replicas_subscriptions_seen(
    gw: httpx.AsyncClient, app: FastAPI, platform: Platform, receiver: Receiver
) -> None:
    hub: WebhookHub = app.state.webhooks
    ana = await customer(gw)
    assert (
        await gw.post("/api/interactions/purchases", json={**PURCHASE, "customer_id": ana})
    ).status_code == 201
    await platform.drain()
    # Nobody subscribes: the gateway's consumer did not even open a transaction for those events.
    assert await _inbox_rows(hub) == 0

    # Another replica takes a subscription (in the shared database): this one notices on its next read.
    async with hub.uow() as uow:
        await uow.session.execute(
            subscriptions.insert().values(
                id="from-another-replica",
                url=HOOK,
                event_types=[PURCHASED],
                secret="whsec_other",
                description=None,
                active=True,
                created_at=datetime.now(UTC),
            )
        )
        await uow.commit()
    await until(lambda: hub._wants(_event_of_type(PURCHASED)))
    assert not hub._wants(_event_of_type(EARNED))
    assert (
        await gw.post("/api/interactions/purchases", json={**PURCHASE, "customer_id": ana})
    ).status_code == 201
    await platform.drain()
    await until(lambda: len(receiver.received) == 1)
    assert [e["type"] for e in receiver.events()] == [PURCHASED]
    assert await _inbox_rows(hub) == 1


def _event_of_type(event_type: str) -> CloudEvent:
    return CloudEvent.model_validate(
        {"id": "e", "source": "/test", "type": event_type, "specversion": "1.0", "data": {}}
    )


class TestSubscriptionInput:
    @pytest.mark.parametrize(
        ("body", "field"),
        [
            ({"url": "http://erp.example.com/hook", "event_types": [PURCHASED]}, "body.url"),
            ({"url": "ftp://erp.example.com/hook", "event_types": [PURCHASED]}, "body.url"),
            ({"url": "https://10.0.0.7/hook", "event_types": [PURCHASED]}, "body.url"),
            ({"url": "https://user:pw@erp.example.com/hook", "event_types": [PURCHASED]}, "body.url"),
            ({"url": "https://erp.example.com/hook", "event_types": ["crm.nope.v1"]}, "body.event_types.0"),
            ({"url": "https://erp.example.com/hook", "event_types": []}, "body.event_types"),
            ({"url": "https://erp.example.com/hook", "event_types": [PURCHASED], "x": 1}, "body.x"),
        ],
    )
    async def test_refused(self, gw: httpx.AsyncClient, body: dict[str, Any], field: str) -> None:
        response = await gw.post("/api/webhooks/subscriptions", json=body)
        assert response.status_code == 422, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert field in [e["field"] for e in response.json()["errors"]]

    async def test_https_is_accepted_and_event_types_listed(self, gw: httpx.AsyncClient) -> None:
        created = await subscribe(gw, PURCHASED, url="https://erp.example.com/hooks/crm")
        assert created["event_types"] == [PURCHASED]
        types = {t["type"] for t in (await gw.get("/api/webhooks/event-types")).json()["items"]}
        assert {PURCHASED, EARNED} <= types


async def test_plain_http_to_localhost_needs_the_setting(platform: Platform, tmp_path: Path) -> None:
    app = platform.gateway(gateway_settings(var_dir=tmp_path))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as gw,
    ):
        response = await gw.post(
            "/api/webhooks/subscriptions", json={"url": HOOK, "event_types": [PURCHASED]}
        )
        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "body.url"


async def test_without_a_database_webhooks_answer_503(tmp_path: Path) -> None:
    """Distributed mode without CRM_GATEWAY_DATABASE_URL: the rest of the gateway works, webhooks say so."""
    clients = {name: httpx.AsyncClient(base_url=f"http://{name}") for name in ("identity", "loyalty")}
    app = gateway_app.build(gateway_settings(var_dir=tmp_path), clients=clients)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as gw:
        response = await gw.get("/api/webhooks/subscriptions")
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    document = app.openapi()
    for path in ("/api/webhooks/subscriptions", "/api/webhooks/subscriptions/{subscription_id}/deliveries"):
        assert path in document["paths"]
