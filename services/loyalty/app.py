"""Loyalty's composition root."""

from __future__ import annotations

from pathlib import Path

from services.loyalty import consumers, routes
from services.loyalty import segments as _segments  # noqa: F401  (its table)
from services.loyalty.models import MESSAGING, metadata
from services.loyalty.settings import LoyaltySettings, load_settings
from shared.messaging.bus import EventBus
from shared.runtime import ServiceRuntime

MIGRATIONS = Path(__file__).parent / "migrations"


def build(settings: LoyaltySettings | None = None, bus: EventBus | None = None) -> ServiceRuntime:
    settings = settings or load_settings()
    runtime = ServiceRuntime.create(
        settings,
        bus,
        metadata=metadata,
        tables=MESSAGING,
        migrations=MIGRATIONS,
        title="CRM loyalty service",
        description="Points ledger, earning, rewards, tiers.",
    )
    runtime.include_router(routes.router)
    runtime.include_router(routes.customers)
    consumers.register(runtime.consumer)
    runtime.subscribe()
    return runtime


def create_app() -> object:
    return build().app
