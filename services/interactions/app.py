"""Interactions' composition root."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx

from services.interactions import consumers, routes
from services.interactions.communications import models as _communication_models  # noqa: F401
from services.interactions.communications import routes as communication_routes
from services.interactions.complaints import jobs as complaint_jobs
from services.interactions.complaints import models as _complaint_models  # noqa: F401
from services.interactions.complaints import routes as complaint_routes
from services.interactions.directory import CustomerDirectory
from services.interactions.models import MESSAGING, metadata
from services.interactions.reports import routes as report_routes
from services.interactions.settings import InteractionsSettings, load_settings
from services.interactions.surveys import models as _survey_models  # noqa: F401
from services.interactions.surveys import routes as survey_routes
from shared.auth.guard import ForwardingAuth
from shared.auth.setup import service_token_provider
from shared.messaging.bus import EventBus
from shared.runtime import ServiceRuntime
from shared.telemetry import trace_client

MIGRATIONS = Path(__file__).parent / "migrations"


def build(
    settings: InteractionsSettings | None = None,
    bus: EventBus | None = None,
    identity: httpx.AsyncClient | None = None,
    service_token: Callable[[], Awaitable[str | None]] | None = None,
) -> ServiceRuntime:
    """`service_token` gives a service principal's token for calls to identity made outside a request
    (embedded mode: minted in-process; otherwise client credentials from `CRM_AUTH_CLIENT_ID`/`_SECRET`).
    Within a request the caller's own token is forwarded."""
    settings = settings or load_settings()
    runtime = ServiceRuntime.create(
        settings,
        bus,
        metadata=metadata,
        tables=MESSAGING,
        migrations=MIGRATIONS,
        title="CRM interactions service",
        description="Every contact on every channel; purchases.",
    )
    identity = identity or httpx.AsyncClient(
        base_url=settings.identity_url, timeout=settings.identity_timeout
    )
    identity.auth = ForwardingAuth(service_token or service_token_provider(settings))
    trace_client(identity, runtime.name)  # client spans + `traceparent` on calls to identity
    runtime.app.state.directory = CustomerDirectory(identity)
    runtime.include_router(routes.router)
    runtime.include_router(routes.contacts_router)
    runtime.include_router(complaint_routes.router)
    runtime.include_router(survey_routes.router)
    runtime.include_router(communication_routes.router)
    runtime.include_router(report_routes.router)
    consumers.register(runtime.consumer)
    complaint_jobs.register(runtime)  # the SLA watch: overdue complaints detected and escalated
    runtime.subscribe()
    return runtime


def create_app() -> object:
    return build().app
