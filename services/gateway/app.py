"""The gateway's composition root."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping

import httpx
from fastapi import FastAPI

from services.gateway import routes
from services.gateway.settings import GatewaySettings, load_settings
from services.gateway.upstreams import CircuitBreaker, Upstream, http_client
from shared.http import create_app

Hook = Callable[[], Awaitable[None]]


def build(
    settings: GatewaySettings | None = None,
    *,
    clients: Mapping[str, httpx.AsyncClient] | None = None,
    on_startup: Hook | None = None,
    on_shutdown: Hook | None = None,
) -> FastAPI:
    """The gateway app. `clients` replaces the HTTP clients to the services (embedded mode passes
    in-process transports); the hooks start and stop what the gateway hosts (embedded mode: all services)."""
    settings = settings or load_settings()
    urls = settings.upstream_urls()
    chosen = (
        dict(clients)
        if clients is not None
        else {
            name: http_client(
                url, timeout=settings.upstream_timeout, max_connections=settings.max_connections
            )
            for name, url in urls.items()
        }
    )
    upstreams = {
        name: Upstream(
            name,
            client,
            retries=settings.upstream_retries,
            breaker=CircuitBreaker(settings.breaker_failures, settings.breaker_reset_seconds),
        )
        for name, client in chosen.items()
    }

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if on_startup is not None:
            await on_startup()
        try:
            yield
        finally:
            for upstream in upstreams.values():
                await upstream.close()
            if on_shutdown is not None:
                await on_shutdown()

    app = create_app(
        service="gateway",
        title="CRM gateway",
        description="The platform's single entry.",
        version="0.1.0",
        lifespan=lifespan,
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    app.state.upstreams = upstreams
    app.state.settings = settings
    app.include_router(routes.router)
    return app


def create_gateway() -> FastAPI:
    """Factory for `uvicorn --factory services.gateway.app:create_gateway` (distributed mode)."""
    return build()
