"""Interactions service settings (`CRM_INTERACTIONS_*`, falling back to `CRM_*`)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings, load_service_settings


class InteractionsSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="CRM_INTERACTIONS_", extra="ignore", env_file=".env")

    service_name: str = "interactions"
    identity_url: str = "http://127.0.0.1:8001"
    identity_timeout: float = 2.0
    complaint_sla_scan_interval: float = Field(
        default=60.0,
        ge=0,
        description="Seconds between two runs of the complaints' SLA watch (0: no background watch; "
        "`POST /complaints/sla-scan` still runs it on demand)",
    )


def load_settings(**overrides: object) -> InteractionsSettings:
    return load_service_settings(InteractionsSettings, **overrides)
