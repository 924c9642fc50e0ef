"""The gateway's HTTP transport to the services in distributed mode: aiohttp under httpx's API.

Every request through the gateway is an HTTP call to a service, and on this kind of machine httpx's
own connection pool and HTTP/1.1 parser (httpcore, h11: pure Python) cost ~1.3 ms of CPU per call —
a third of what the gateway spends on a proxied request. aiohttp's C parser and pool do the same
for a fraction of that. `httpx-aiohttp` (by httpx's maintainer) plugs aiohttp in as an httpx
transport, so everything above — `Upstream`, the 360, tracing, tests with httpx's ASGI and mock
transports — keeps httpx's requests, responses and exceptions.

One thing httpx's pool did that aiohttp's does not say apart: running out of connections. Waiting
longer than the `pool` timeout for a free one raises `httpx.PoolTimeout` here as there, so the
gateway still sheds load with a fast 503 instead of counting a busy pool as a failing service.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport
from httpx_aiohttp.transport import map_aiohttp_exceptions


class _Released(httpx.AsyncByteStream):
    """The response body; giving it back frees the connection slot."""

    def __init__(self, stream: httpx.AsyncByteStream, release: asyncio.Semaphore) -> None:
        self._stream = stream
        self._release: asyncio.Semaphore | None = release

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._stream:
            yield chunk

    async def aclose(self) -> None:
        try:
            await self._stream.aclose()
        finally:
            if self._release is not None:
                self._release.release()
                self._release = None


class ServiceTransport(httpx.AsyncBaseTransport):
    """aiohttp under httpx, at most `max_connections` requests in flight (then `PoolTimeout`)."""

    def __init__(self, *, max_connections: int) -> None:
        self._inner = AiohttpTransport(
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
        )
        self._slots = asyncio.Semaphore(max_connections)

    async def _slot(self, wait: float | None, request: httpx.Request | None = None) -> None:
        if self._slots.locked():  # every slot taken: wait, at most the pool timeout
            try:
                await asyncio.wait_for(self._slots.acquire(), wait)
            except TimeoutError as exc:
                raise httpx.PoolTimeout("no free connection to the service", request=request) from exc
        else:  # a free slot: taken at once, without wait_for's task and timer (~30 µs a request)
            await self._slots.acquire()

    async def forward(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        content: bytes | None,
        timeout: httpx.Timeout,
    ) -> tuple[int, Sequence[tuple[bytes, bytes]], bytes]:
        """One request straight through aiohttp, without httpx's request and response objects (URL
        parsing, header models, the client's send machinery: ~0.4 ms of a proxied call): the status,
        the raw headers and the body. The same pool, slots and timeouts as `handle_async_request`,
        and aiohttp's errors raised as httpx's."""
        await self._slot(timeout.pool)
        try:
            session = self._session()
            with map_aiohttp_exceptions():
                async with session.request(
                    method,
                    url,
                    headers=headers,
                    data=content,
                    allow_redirects=False,
                    auto_decompress=False,
                    compress=False,
                    timeout=aiohttp.ClientTimeout(
                        sock_connect=timeout.connect, sock_read=timeout.read, connect=timeout.pool
                    ),
                ) as response:
                    return response.status, response.raw_headers, await response.read()
        finally:
            self._slots.release()

    def _session(self) -> aiohttp.ClientSession:
        client = self._inner.client
        if not isinstance(client, aiohttp.ClientSession):
            client = self._inner.client = self._inner.get_client()
        return client

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await self._slot(request.extensions.get("timeout", {}).get("pool"), request)
        try:
            response = await self._inner.handle_async_request(request)
        except BaseException:
            self._slots.release()
            raise
        assert isinstance(response.stream, httpx.AsyncByteStream)
        response.stream = _Released(response.stream, self._slots)
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()
