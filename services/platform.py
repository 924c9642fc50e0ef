"""Compose the whole platform: every service's runtime, sharing one bus.

Embedded mode (`crm run`): one process, SQLite files under `var/`, the in-process bus, and the
gateway calling the services through in-process ASGI transports — the same routing code as in
distributed mode, without sockets. The CLI also uses this to reach every service's consumers
(dead-letter listing and replay) and databases (migrations).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI

from services.gateway import app as gateway_app
from services.gateway.settings import GatewaySettings
from services.gateway.settings import load_settings as gateway_settings
from services.identity import app as identity_app
from services.identity.settings import load_settings as identity_settings
from services.interactions import app as interactions_app
from services.interactions.settings import load_settings as interactions_settings
from services.loyalty import app as loyalty_app
from services.loyalty.settings import load_settings as loyalty_settings
from services.segmentation import app as segmentation_app
from services.segmentation.settings import load_settings as segmentation_settings
from shared.auth.keys import LocalKeySet
from shared.auth.setup import use_keys
from shared.logging import get_logger
from shared.messaging.bus import EventBus
from shared.messaging.factory import make_bus
from shared.runtime import ServiceRuntime
from shared.settings import PlatformSettings

log = get_logger(__name__)


def in_process_client(app: FastAPI, name: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=f"http://{name}", timeout=30)


@dataclass
class Platform:
    bus: EventBus
    runtimes: dict[str, ServiceRuntime]
    var_dir: Path | None = None
    keys: LocalKeySet = field(default_factory=LocalKeySet)
    """The token-verification keys every service reads and the gateway fills (in-process JWKS)."""
    overrides: dict[str, Any] = field(default_factory=dict)
    _minter: Callable[[], str] | None = None

    async def service_token(self) -> str | None:
        """A service principal's token, for calls between services outside a request (and `crm demo`)."""
        return self._minter() if self._minter is not None else None

    async def start(self) -> None:
        for runtime in self.runtimes.values():
            await runtime.start()
        await self.bus.start()

    async def stop(self) -> None:
        for runtime in self.runtimes.values():
            await runtime.relay.stop()
        await self.bus.stop()
        for runtime in self.runtimes.values():
            await runtime.stop()

    async def drain(self, rounds: int = 10) -> None:
        """Relay until no service has anything left in its outbox (events cascade: purchase → points)."""
        for _ in range(rounds):
            moved = 0
            for runtime in self.runtimes.values():
                while (n := await runtime.relay.relay_once()) > 0:
                    moved += n
            if moved == 0:
                return

    def gateway(self, settings: GatewaySettings | None = None, **options: Any) -> FastAPI:
        """The gateway in front of every service, its webhook consumer on the shared bus (its database
        next to theirs). `options` go to `gateway_app.build` (e.g. `webhook_transport` in tests)."""
        clients = {name: in_process_client(rt.app, name) for name, rt in self.runtimes.items()}
        if settings is None:
            settings = gateway_settings(**self.overrides)
        app = gateway_app.build(
            settings,
            clients=clients,
            on_startup=self.start,
            on_shutdown=self.stop,
            bus=self.bus,
            keys=self.keys,
            **options,
        )
        store = getattr(app.state, "auth_store", None)
        if store is not None:
            self._minter = lambda: store.service_token("platform")
        return app


def build_platform(
    var_dir: Path | None = None, bus: EventBus | None = None, *, auth_enabled: bool | None = None
) -> Platform:
    """All four services on one shared bus (in-process unless `CRM_BUS=kafka`). The services verify
    tokens with the key set the gateway fills in this process (`Platform.keys`). `auth_enabled`
    overrides `CRM_AUTH_ENABLED` for every part (the gateway too, when `gateway()` makes its settings)."""
    overrides: dict[str, Any] = {"var_dir": var_dir} if var_dir is not None else {}
    if auth_enabled is not None:
        overrides["auth_enabled"] = auth_enabled
    platform_settings = PlatformSettings(**overrides)
    bus = bus or make_bus(platform_settings, client_id="crm-embedded")
    keys = LocalKeySet()
    holder: list[Platform] = []

    async def service_token() -> str | None:
        return await holder[0].service_token() if holder else None

    identity = identity_app.build(identity_settings(**overrides), bus)
    interactions = interactions_app.build(
        interactions_settings(**overrides),
        bus,
        identity=in_process_client(identity.app, "identity"),
        service_token=service_token,
    )
    segmentation = segmentation_app.build(segmentation_settings(**overrides), bus)
    loyalty = loyalty_app.build(loyalty_settings(**overrides), bus)
    runtimes = {
        "identity": identity,
        "interactions": interactions,
        "segmentation": segmentation,
        "loyalty": loyalty,
    }
    for runtime in runtimes.values():
        use_keys(runtime.app, runtime.settings, keys)
    platform = Platform(bus=bus, runtimes=runtimes, var_dir=var_dir, keys=keys, overrides=overrides)
    holder.append(platform)
    return platform


def create_embedded_app() -> FastAPI:
    """Factory for `uvicorn --factory services.platform:create_embedded_app`: all of it on one port."""
    return build_platform().gateway()
