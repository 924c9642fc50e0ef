"""Load shedding: past `max_in_flight` requests in progress, an app refuses the next one at once
(503 problem+json with Retry-After) instead of queueing it; probes still answer; capacity comes back
as soon as requests finish."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from fastapi import FastAPI

from shared.http import create_app, operations_router
from shared.metrics import HTTP_SHED
from shared.settings import PlatformSettings


async def _ready() -> dict[str, bool]:
    return {"database": True}


def _app(limit: int, gate: asyncio.Event, started: asyncio.Queue[None]) -> FastAPI:
    app = create_app(service="shedtest", title="t", description="t", version="0", max_in_flight=limit)
    app.include_router(operations_router(_ready))

    @app.get("/slow")
    async def slow() -> dict[str, bool]:
        await started.put(None)
        await gate.wait()
        return {"ok": True}

    return app


@pytest.fixture(autouse=True)
def _no_auth(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRM_AUTH_ENABLED", "false")


async def test_requests_past_the_limit_are_refused_at_once_and_capacity_returns() -> None:
    gate, started = asyncio.Event(), asyncio.Queue[None]()
    app = _app(2, gate, started)
    before = HTTP_SHED.labels("shedtest")._value.get()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        held = [asyncio.create_task(client.get("/slow")) for _ in range(2)]
        for _ in held:
            await asyncio.wait_for(started.get(), 5)
        refused = await asyncio.wait_for(client.get("/slow"), 2)  # at once, not after the slow ones
        assert refused.status_code == 503
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert refused.headers["retry-after"] == "1"
        body = refused.json()
        assert body["type"].endswith("/overloaded")
        assert "2 requests in progress" in body["detail"]
        assert refused.headers.get("x-request-id")  # inside the request context: traced and counted
        assert HTTP_SHED.labels("shedtest")._value.get() == before + 1
        health = await client.get("/health")  # probes are never refused
        assert health.status_code == 200
        gate.set()
        assert [r.status_code for r in await asyncio.gather(*held)] == [200, 200]
        again = await client.get("/slow")
        assert again.status_code == 200


async def test_no_limit_when_zero() -> None:
    gate, started = asyncio.Event(), asyncio.Queue[None]()
    app = _app(0, gate, started)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        held = [asyncio.create_task(client.get("/slow")) for _ in range(20)]
        for _ in held:
            await asyncio.wait_for(started.get(), 5)
        gate.set()
        assert {r.status_code for r in await asyncio.gather(*held)} == {200}


def test_the_setting_defaults_to_a_limit() -> None:
    assert PlatformSettings().max_in_flight == 256
    assert PlatformSettings(max_in_flight=0).max_in_flight == 0
