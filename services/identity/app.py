"""Identity's composition root. `app` is what `uvicorn services.identity.app:app` serves alone."""

from __future__ import annotations

from pathlib import Path

from services.identity import routes
from services.identity.models import MESSAGING, metadata
from services.identity.service import Matcher
from services.identity.settings import IdentitySettings, load_settings
from shared.messaging.bus import EventBus
from shared.messaging.factory import make_bus
from shared.runtime import ServiceRuntime

MIGRATIONS = Path(__file__).parent / "migrations"


def build(settings: IdentitySettings | None = None, bus: EventBus | None = None) -> ServiceRuntime:
    settings = settings or load_settings()
    owns_bus = bus is None
    runtime = ServiceRuntime(
        settings=settings,
        metadata=metadata,
        tables=MESSAGING,
        migrations=MIGRATIONS,
        bus=bus or make_bus(settings, client_id="crm-identity"),
        owns_bus=owns_bus,
        title="CRM identity service",
        description=(
            "Customer profiles and golden records: every source record matched (deterministic rules, then "
            "Fellegi–Sunter scoring), merged with survivorship rules and lineage, reviewable and reversible; "
            "consents, erasure and the audit trail."
        ),
    )
    runtime.app.state.matcher = Matcher()
    runtime.include_router(routes.router)
    runtime.subscribe()
    return runtime


def create_app() -> object:
    """Factory for `uvicorn --factory services.identity.app:create_app`."""
    return build().app
