"""Interactions' composition root."""

from __future__ import annotations

from pathlib import Path

import httpx

from services.interactions import consumers, routes
from services.interactions.directory import CustomerDirectory
from services.interactions.models import MESSAGING, metadata
from services.interactions.settings import InteractionsSettings, load_settings
from shared.messaging.bus import EventBus
from shared.runtime import ServiceRuntime

MIGRATIONS = Path(__file__).parent / "migrations"


def build(
    settings: InteractionsSettings | None = None,
    bus: EventBus | None = None,
    identity: httpx.AsyncClient | None = None,
) -> ServiceRuntime:
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
    runtime.app.state.directory = CustomerDirectory(identity)
    runtime.include_router(routes.router)
    runtime.include_router(routes.contacts_router)
    consumers.register(runtime.consumer)
    runtime.subscribe()
    return runtime


def create_app() -> object:
    return build().app
