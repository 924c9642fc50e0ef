"""The services behind the gateway: pooled HTTP clients, retries for idempotent requests, circuit breakers.

A service that keeps failing is not hammered: after `breaker_failures` consecutive connection
failures or 5xx answers its breaker opens and requests get an immediate 503 for
`breaker_reset_seconds`; then one trial request decides whether it closes again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar
from urllib.parse import parse_qsl, quote

import httpx

from services.gateway.transport import ServiceTransport
from shared.auth.guard import principal_var
from shared.errors import ServiceUnavailable
from shared.telemetry import TracingTransport, trace_client

T = TypeVar("T")

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
POOL_WAIT_SECONDS = 1.0
"""How long a request waits for a free pooled connection to a service before a 503: past the pool's
size, waiting longer only builds a queue that makes every request slow."""


@dataclass
class CircuitBreaker:
    failures_to_open: int
    reset_seconds: float
    failures: int = 0
    opened_at: float | None = None
    _trial_in_flight: bool = field(default=False, repr=False)

    def allow(self) -> bool:
        if self.opened_at is None:
            return True
        if time.monotonic() - self.opened_at < self.reset_seconds or self._trial_in_flight:
            return False
        self._trial_in_flight = True  # half-open: let one request through
        return True

    def success(self) -> None:
        self.failures = 0
        self.opened_at = None
        self._trial_in_flight = False

    def failure(self) -> None:
        self.failures += 1
        self._trial_in_flight = False
        if self.failures >= self.failures_to_open:
            self.opened_at = time.monotonic()

    @property
    def state(self) -> str:
        if self.opened_at is None:
            return "closed"
        return "half-open" if time.monotonic() - self.opened_at >= self.reset_seconds else "open"


class Upstream:
    def __init__(
        self, name: str, client: httpx.AsyncClient, *, retries: int, breaker: CircuitBreaker
    ) -> None:
        self.name = name
        self.client = trace_client(client, "gateway")  # client spans + `traceparent` when tracing is on
        self._base = str(client.base_url).rstrip("/")
        self.retries = retries
        self.breaker = breaker

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: list[tuple[str, str | int | float | bool | None]] | None = None,
        headers: dict[str, str] | None = None,
        content: bytes | None = None,
        timeout: float | None = None,
        retries: int | None = None,
    ) -> httpx.Response:
        """The service's answer. `timeout` (seconds, each of connect / read / write) and `retries`
        override the client's for this call: the customer 360's parts, which stop being waited for
        after their own timeout, pass theirs so nothing keeps a pooled connection longer."""
        limit: httpx.Timeout | httpx._client.UseClientDefault = httpx.USE_CLIENT_DEFAULT
        if timeout is not None:
            limit = httpx.Timeout(timeout, pool=min(timeout, POOL_WAIT_SECONDS))
        sent = _with_caller_token(headers)

        async def send() -> httpx.Response:
            # `path` is decoded (ids may hold any character): sent percent-encoded again.
            return await self.client.request(
                method, quote(path, safe="/"), params=params, headers=sent, content=content, timeout=limit
            )

        return await self._call(method, send, lambda r: r.status_code, retries)

    async def forward(
        self, method: str, path: str, query: str, headers: dict[str, str], content: bytes | None
    ) -> tuple[int, Sequence[tuple[bytes, bytes]], bytes]:
        """`request` for the gateway's pass-through route: the query string as the caller sent it, and
        the answer as status, raw headers and body. In distributed mode with tracing off it goes
        straight to aiohttp (`ServiceTransport.forward`), without httpx's request and response objects;
        otherwise (embedded mode, tests' transports, tracing on) through `request`."""
        direct = self._direct()
        if direct is None:
            response = await self.request(
                method, path, params=list(parse_qsl(query, keep_blank_values=True)), headers=headers,
                content=content,
            )  # fmt: skip
            return response.status_code, response.headers.raw, response.content
        url = f"{self._base}{quote(path, safe='/')}" + (f"?{query}" if query else "")
        sent = _with_caller_token(headers) or {}
        timeout = self.client.timeout

        async def send() -> tuple[int, Sequence[tuple[bytes, bytes]], bytes]:
            return await direct.forward(method, url, sent, content, timeout)

        return await self._call(method, send, lambda r: r[0], None)

    def _direct(self) -> ServiceTransport | None:
        transport: httpx.AsyncBaseTransport | None = self.client._transport
        if isinstance(transport, TracingTransport):
            transport = transport.untraced()
        return transport if isinstance(transport, ServiceTransport) else None

    async def _call(
        self, method: str, send: Callable[[], Awaitable[T]], status: Callable[[T], int], retries: int | None
    ) -> T:
        """`send()` behind the breaker, retried (idempotent methods) on connection failures."""
        if not self.breaker.allow():
            raise ServiceUnavailable(f"{self.name} service is unavailable (circuit open)", service=self.name)
        retry = self.retries if retries is None else retries
        attempts = 1 + (retry if method.upper() in IDEMPOTENT_METHODS else 0)
        last: Exception | None = None
        for attempt in range(attempts):
            try:
                response = await send()
            except httpx.PoolTimeout as exc:
                # Every pooled connection to the service is busy: this gateway is saturated, the
                # service is not failing. A fast 503 (no retry, the breaker untouched) sheds the load.
                raise ServiceUnavailable(
                    f"{self.name} service is busy: no free connection within {POOL_WAIT_SECONDS:g} s; "
                    "retry shortly",
                    service=self.name,
                ) from exc
            except (
                httpx.ConnectError,
                httpx.ConnectTimeout,
                httpx.RemoteProtocolError,
                httpx.ReadTimeout,
            ) as exc:
                last = exc
                if isinstance(exc, httpx.ReadTimeout) and method.upper() not in IDEMPOTENT_METHODS:
                    break
                await asyncio.sleep(0.05 * (2**attempt))
                continue
            code = status(response)
            if code >= 500 and code != 503:
                self.breaker.failure()
            else:
                self.breaker.success()
            return response
        self.breaker.failure()
        raise ServiceUnavailable(
            f"{self.name} service did not answer ({type(last).__name__})", service=self.name
        ) from last

    async def close(self) -> None:
        await self.client.aclose()


def _with_caller_token(headers: dict[str, str] | None) -> dict[str, str] | None:
    """Services verify tokens themselves: forward the caller's JWT (for an API key, the short-lived
    JWT minted for its principal) unless the call already carries one (a service token)."""
    principal = principal_var.get()
    if principal is None or principal.token is None:
        return headers
    if headers is not None and any(k.lower() == "authorization" for k in headers):
        return headers
    return {**(headers or {}), "authorization": f"Bearer {principal.token}"}


def http_client(base_url: str, *, timeout: float, max_connections: int) -> httpx.AsyncClient:
    """A pooled client to one service in distributed mode (aiohttp underneath, see `transport`)."""
    return httpx.AsyncClient(
        base_url=base_url,
        timeout=httpx.Timeout(timeout, connect=min(timeout, 2.0), pool=min(timeout, POOL_WAIT_SECONDS)),
        transport=ServiceTransport(max_connections=max_connections),
    )
