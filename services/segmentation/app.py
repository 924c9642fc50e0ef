"""Segmentation's composition root."""

from __future__ import annotations

from pathlib import Path

from services.segmentation import consumers, routes
from services.segmentation.models import MESSAGING, metadata
from services.segmentation.settings import SegmentationSettings, load_settings
from shared.messaging.bus import EventBus
from shared.runtime import ServiceRuntime

MIGRATIONS = Path(__file__).parent / "migrations"


def build(settings: SegmentationSettings | None = None, bus: EventBus | None = None) -> ServiceRuntime:
    settings = settings or load_settings()
    runtime = ServiceRuntime.create(
        settings,
        bus,
        metadata=metadata,
        tables=MESSAGING,
        migrations=MIGRATIONS,
        title="CRM segmentation service",
        description="Customer value, risk, stage and segments.",
    )
    runtime.include_router(routes.router)
    runtime.include_router(routes.operations)
    consumers.register(runtime.consumer)
    runtime.subscribe()
    return runtime


def create_app() -> object:
    return build().app
