"""The gateway's aiohttp transport under httpx: answers and bodies come through, a full pool is a
`PoolTimeout` (a fast 503 upstream of it, not a failing service), a slot comes back once the body is
read or the call fails, and a refused connection is an httpx transport error."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator

import httpx
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from services.gateway.transport import ServiceTransport
from services.gateway.upstreams import CircuitBreaker, Upstream
from shared.errors import ServiceUnavailable


@pytest.fixture
async def service() -> AsyncIterator[str]:
    async def echo(request: web.Request) -> web.Response:
        body = await request.read()
        return web.json_response(
            {
                "method": request.method,
                "path": request.path_qs,
                "body": body.decode(),
                "x": request.headers.get("x"),
            }
        )

    async def slow(_: web.Request) -> web.Response:
        await asyncio.sleep(0.5)
        return web.Response(text="late")

    app = web.Application()
    app.router.add_route("*", "/echo", echo)
    app.router.add_get("/slow", slow)
    server = TestServer(app)
    await server.start_server()
    try:
        yield str(server.make_url(""))
    finally:
        await server.close()


def client(base: str, *, connections: int = 4, pool: float = 1.0) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=base,
        timeout=httpx.Timeout(5.0, pool=pool),
        transport=ServiceTransport(max_connections=connections),
    )


async def test_requests_and_bodies_go_through(service: str) -> None:
    async with client(service) as c:
        response = await c.post("/echo", params={"a": "1"}, content=b'{"k": 2}', headers={"x": "y"})
        assert response.status_code == 200
        assert response.json() == {"method": "POST", "path": "/echo?a=1", "body": '{"k": 2}', "x": "y"}
        many = await asyncio.gather(*(c.get("/echo") for _ in range(20)))
        assert {r.status_code for r in many} == {200}


async def test_a_full_pool_is_a_pool_timeout_and_slots_come_back(service: str) -> None:
    async with client(service, connections=1, pool=0.1) as c:
        busy = asyncio.ensure_future(c.get("/slow"))
        await asyncio.sleep(0.05)
        with pytest.raises(httpx.PoolTimeout):
            await c.get("/echo")
        assert (await busy).text == "late"
        for _ in range(3):  # the one slot was given back each time
            assert (await c.get("/echo")).status_code == 200


async def test_a_refused_connection_is_a_transport_error_and_frees_its_slot() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there once closed
    async with client(f"http://127.0.0.1:{port}", connections=1, pool=0.1) as c:
        for _ in range(2):
            with pytest.raises(httpx.TransportError) as caught:
                await c.get("/echo")
            assert not isinstance(caught.value, httpx.PoolTimeout)


# --- the pass-through route's direct path (Upstream.forward → ServiceTransport.forward) ------------


def upstream(base: str, *, connections: int = 4, pool: float = 1.0) -> Upstream:
    return Upstream(
        "echo",
        client(base, connections=connections, pool=pool),
        retries=1,
        breaker=CircuitBreaker(failures_to_open=3, reset_seconds=30),
    )


async def test_forward_goes_straight_to_aiohttp_with_the_same_answer(service: str) -> None:
    up = upstream(service)
    try:
        assert up._direct() is not None  # tracing off, a ServiceTransport: the direct path
        status, headers, body = await up.forward("POST", "/echo", "a=1&a=2&b=%C3%A9", {"x": "y"}, b'{"k": 2}')
        assert status == 200
        assert (b"Content-Type", b"application/json; charset=utf-8") in headers
        assert json.loads(body) == {
            "method": "POST",
            "path": "/echo?a=1&a=2&b=%C3%A9",
            "body": '{"k": 2}',
            "x": "y",
        }
        # The same call through httpx (`request`) gives the same answer.
        via_httpx = await up.request("POST", "/echo", params=[("a", "1"), ("a", "2"), ("b", "é")],
                                     headers={"x": "y"}, content=b'{"k": 2}')  # fmt: skip
        assert via_httpx.json() == json.loads(body)
    finally:
        await up.close()


async def test_forward_sheds_a_full_pool_and_retries_nothing_it_should_not(service: str) -> None:
    up = upstream(service, connections=1, pool=0.1)
    try:
        busy = asyncio.ensure_future(up.forward("GET", "/slow", "", {}, None))
        await asyncio.sleep(0.05)
        with pytest.raises(ServiceUnavailable, match="busy"):
            await up.forward("GET", "/echo", "", {}, None)
        assert (await busy)[2] == b"late"
        assert up.breaker.state == "closed"  # a busy pool is not a failing service
        assert (await up.forward("GET", "/echo", "", {}, None))[0] == 200  # the slot came back
    finally:
        await up.close()


async def test_forward_to_a_dead_service_is_a_503_and_counts_for_the_breaker() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    up = upstream(f"http://127.0.0.1:{port}", connections=1, pool=0.1)
    try:
        for _ in range(3):
            with pytest.raises(ServiceUnavailable, match="did not answer"):
                await up.forward("GET", "/echo", "", {}, None)
        assert up.breaker.state == "open"
        with pytest.raises(ServiceUnavailable, match="circuit open"):
            await up.forward("GET", "/echo", "", {}, None)
    finally:
        await up.close()
