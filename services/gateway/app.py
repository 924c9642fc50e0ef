"""The gateway's composition root."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import httpx
from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

from services.gateway import console, customer360, routes
from services.gateway.auth import me
from services.gateway.auth import routes as auth_routes
from services.gateway.auth import setup as auth_setup
from services.gateway.auth.setup import GatewayAuth
from services.gateway.cache360 import Customer360Cache
from services.gateway.limits import (
    BodyLimitMiddleware,
    PageSizeMiddleware,
    RateLimitMiddleware,
    TokenBuckets,
    default_rules,
)
from services.gateway.settings import GatewaySettings, load_settings
from services.gateway.upstreams import CircuitBreaker, Upstream, http_client
from services.gateway.webhooks import routes as webhook_routes
from services.gateway.webhooks.hub import MIGRATIONS, WebhookHub
from shared.auth.keys import LocalKeySet
from shared.http import create_app
from shared.messaging.bus import EventBus
from shared.migrations import upgrade
from shared.telemetry import configure_from as configure_telemetry

Hook = Callable[[], Awaitable[None]]


def build(
    settings: GatewaySettings | None = None,
    *,
    clients: Mapping[str, httpx.AsyncClient] | None = None,
    on_startup: Hook | None = None,
    on_shutdown: Hook | None = None,
    bus: EventBus | None = None,
    webhook_transport: httpx.AsyncBaseTransport | None = None,
    keys: LocalKeySet | None = None,
) -> FastAPI:
    """The gateway app. `clients` replaces the HTTP clients to the services (embedded mode passes
    in-process transports); the hooks start and stop what the gateway hosts (embedded mode: all services).

    `bus` is the platform's shared bus in embedded mode: the webhook consumer subscribes to it and the
    gateway's database defaults to `<var_dir>/gateway.db`. Without it (distributed mode) webhooks run
    on a bus of their own only when `CRM_GATEWAY_DATABASE_URL` is set. `webhook_transport` replaces
    the transport webhooks are sent with (tests).

    Authentication (on unless `CRM_AUTH_ENABLED=false` in development) needs the gateway's database:
    `<var_dir>/gateway.db` in embedded mode, `CRM_GATEWAY_DATABASE_URL` in distributed mode. `keys`
    is the key set the gateway publishes and fills (embedded mode shares it with the services)."""
    settings = settings or load_settings()
    configure_telemetry("gateway", settings)  # CRM_OTEL_* / CRM_GATEWAY_OTEL_*: see shared/telemetry.py
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

    webhooks = _webhook_hub(settings, bus, webhook_transport)
    auth: GatewayAuth | None = None

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if webhooks is not None:
            await webhooks.migrate()  # before any event can reach the webhook consumer
        if auth is not None:
            if settings.run_migrations and (webhooks is None or webhooks.database_url != auth.database_url):
                await upgrade(auth.database_url, MIGRATIONS)
            await auth.start()
        if on_startup is not None:
            await on_startup()
        if webhooks is not None:
            await webhooks.start()
        try:
            yield
        finally:
            for upstream in upstreams.values():
                await upstream.close()
            if on_shutdown is not None:
                await on_shutdown()
            if webhooks is not None:
                await webhooks.stop()
            if auth is not None:
                await auth.stop()  # flushes the audit log: nothing is lost on a clean shutdown

    app = create_app(
        service="gateway",
        title="CRM gateway",
        description="The platform's single entry.",
        version="0.1.0",
        lifespan=lifespan,
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
        max_in_flight=settings.max_in_flight,
    )
    app.state.upstreams = upstreams
    app.state.settings = settings
    app.state.webhooks = webhooks
    app.state.customer360_cache = Customer360Cache(
        seconds=settings.customer360_cache_seconds,
        max_entries=settings.customer360_cache_entries,
        affected=customer360.affected_groups,
    )
    if webhooks is not None:  # its consumer reads every event: each drops what it may have changed
        webhooks.observers.append(app.state.customer360_cache.observe)
    auth = auth_setup.install(app, settings, embedded=bus is not None, keys=keys)
    # The pass-through to the known services first (most requests are those, and route matching walks
    # the routes in order); then the gateway's own routes; then the catch-all `/api/{service}/{path}`
    # (an unknown service's 404). No route of the gateway's own starts with a service's name.
    app.include_router(routes.service_proxy(sorted(upstreams)))
    app.include_router(auth_routes.router)
    app.include_router(auth_routes.admin)
    app.include_router(me.router)
    app.include_router(customer360.router)
    app.include_router(webhook_routes.router)
    app.include_router(routes.router)
    console.install(app)  # the staff console at /console (static files over the public API)
    _document_security(app)
    _install_limits(app, settings)
    return app


SECURITY_SCHEMES: dict[str, Any] = {
    "bearer": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "An EdDSA-signed access token from `/auth/token` or `/auth/member/token`",
    },
    "oauth2": {
        "type": "oauth2",
        "description": "Staff users (password) and integration clients (client credentials)",
        "flows": {
            "password": {"tokenUrl": "/auth/token", "refreshUrl": "/auth/token", "scopes": {}},
            "clientCredentials": {"tokenUrl": "/auth/token", "scopes": {}},
        },
    },
    "apiKey": {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": "An API key (`crm_<id>.<secret>`): `crm keys create` or `POST /api/admin/api-keys`",
    },
}
PUBLIC_OPERATIONS = {"/auth/token", "/auth/member/token", "/auth/revoke", "/auth/jwks.json", "/asyncapi.json"}


def _document_security(app: FastAPI) -> None:
    """The security schemes in the OpenAPI document; every operation but the public ones needs one."""
    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = original()
        document.setdefault("components", {})["securitySchemes"] = SECURITY_SCHEMES
        document["security"] = [{"bearer": []}, {"oauth2": []}, {"apiKey": []}]
        for path, item in document.get("paths", {}).items():
            if path in PUBLIC_OPERATIONS:
                for operation in item.values():
                    if isinstance(operation, dict):
                        operation["security"] = []
        app.openapi_schema = document
        return document

    app.openapi = openapi  # type: ignore[method-assign]


def _webhook_hub(
    settings: GatewaySettings, bus: EventBus | None, transport: httpx.AsyncBaseTransport | None
) -> WebhookHub | None:
    url = settings.webhook_database_url(embedded=bus is not None)
    if url is None:
        return None
    if bus is None:
        from shared.messaging.factory import make_bus

        return WebhookHub(
            settings, url, bus=make_bus(settings, client_id="crm-gateway"), owns_bus=True, transport=transport
        )
    return WebhookHub(settings, url, bus=bus, owns_bus=False, transport=transport)


def _install_limits(app: FastAPI, settings: GatewaySettings) -> None:
    """Outermost first: CORS (so refusals carry its headers too), body size, rate, page size."""
    app.add_middleware(PageSizeMiddleware, max_page_size=settings.max_page_size)
    if settings.rate_limits_on:
        rules = default_rules(
            per_minute=settings.rate_limit_per_minute,
            burst=settings.rate_limit_burst,
            login=settings.rate_limit_login_per_minute,
            referral=settings.rate_limit_referral_per_minute,
            redemption=settings.rate_limit_redemption_per_minute,
        )
        buckets = TokenBuckets(max_clients=settings.rate_limit_max_clients)
        app.state.rate_limits = buckets
        app.add_middleware(
            RateLimitMiddleware,
            rules=rules,
            buckets=buckets,
            trust_forwarded_for=settings.trust_forwarded_for,
        )
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_credentials=settings.cors_allow_credentials,
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
            allow_headers=["*"],
            expose_headers=["x-request-id", "etag", "retry-after", "location"],
            max_age=600,
        )


def create_gateway() -> FastAPI:
    """Factory for `uvicorn --factory services.gateway.app:create_gateway` (distributed mode)."""
    return build()
