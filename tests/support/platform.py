"""Helpers for tests on the embedded platform: a gateway client, and a subscriber of chosen events."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import httpx

from services.platform import Platform
from shared.events.envelope import CloudEvent, EventPayload
from shared.messaging.consumer import EventConsumer
from shared.uow import UnitOfWork


def watch(platform: Platform, service: str, group: str, *events: type[EventPayload]) -> list[EventPayload]:
    """What a subscriber of `events` receives (a consumer group of its own, on `service`'s database):
    the returned list fills as the bus delivers."""
    received: list[EventPayload] = []
    watcher = EventConsumer(group, platform.runtimes[service].uow)

    async def keep(_uow: UnitOfWork, payload: EventPayload, _envelope: CloudEvent) -> None:
        received.append(payload)

    for payload_class in events:
        watcher.on(payload_class)(keep)
    platform.bus.subscribe(watcher)
    return received


@contextlib.asynccontextmanager
async def gateway_client(platform: Platform) -> AsyncIterator[httpx.AsyncClient]:
    """The platform's gateway, started, behind an in-process HTTP client."""
    app = platform.gateway()
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as client,
    ):
        yield client


async def new_customer(gw: httpx.AsyncClient, email: str, given_name: str = "Ana") -> str:
    response = await gw.post("/api/identity/customers", json={"given_name": given_name, "email": email})
    assert response.status_code == 201, response.text
    return str(response.json()["customer"]["id"])
