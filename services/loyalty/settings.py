"""Loyalty service settings (`CRM_LOYALTY_*`, falling back to `CRM_*`)."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings, load_service_settings


class LoyaltySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="CRM_LOYALTY_", extra="ignore", env_file=".env")

    service_name: str = "loyalty"


def load_settings(**overrides: object) -> LoyaltySettings:
    return load_service_settings(LoyaltySettings, **overrides)
