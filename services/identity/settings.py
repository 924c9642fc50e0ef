"""Identity service settings (`CRM_IDENTITY_*`, falling back to `CRM_*`)."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings, load_service_settings


class IdentitySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="CRM_IDENTITY_", extra="ignore", env_file=".env")

    service_name: str = "identity"


def load_settings(**overrides: object) -> IdentitySettings:
    return load_service_settings(IdentitySettings, **overrides)
