"""Interactions service settings (`CRM_INTERACTIONS_*`, falling back to `CRM_*`)."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings, load_service_settings


class InteractionsSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="CRM_INTERACTIONS_", extra="ignore", env_file=".env")

    service_name: str = "interactions"
    identity_url: str = "http://127.0.0.1:8001"
    identity_timeout: float = 2.0


def load_settings(**overrides: object) -> InteractionsSettings:
    return load_service_settings(InteractionsSettings, **overrides)
