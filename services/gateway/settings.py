"""Gateway settings (`CRM_GATEWAY_*`, falling back to `CRM_*`)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.settings import PlatformSettings

SERVICES = ("identity", "interactions", "segmentation", "loyalty")


class GatewaySettings(PlatformSettings):
    model_config = SettingsConfigDict(env_prefix="CRM_GATEWAY_", extra="ignore", env_file=".env")

    identity_url: str = "http://127.0.0.1:8001"
    interactions_url: str = "http://127.0.0.1:8002"
    segmentation_url: str = "http://127.0.0.1:8003"
    loyalty_url: str = "http://127.0.0.1:8004"
    upstream_timeout: float = Field(default=10.0, gt=0, le=300)
    upstream_retries: int = Field(default=2, ge=0, le=10)
    breaker_failures: int = Field(default=5, ge=1, le=1000)
    breaker_reset_seconds: float = Field(default=5.0, gt=0, le=600)
    max_connections: int = Field(default=200, ge=1, le=10_000)

    def upstream_urls(self) -> dict[str, str]:
        return {name: getattr(self, f"{name}_url") for name in SERVICES}


def load_settings(**overrides: object) -> GatewaySettings:
    from shared.settings import load_service_settings

    return load_service_settings(GatewaySettings, **overrides)
