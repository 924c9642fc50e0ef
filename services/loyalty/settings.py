"""Loyalty service settings (`CRM_LOYALTY_*`, falling back to `CRM_*`)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings, load_service_settings


class LoyaltySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="CRM_LOYALTY_", extra="ignore", env_file=".env")

    service_name: str = "loyalty"
    jobs_interval: float = Field(
        default=300.0, ge=0, description="Seconds between pending-release, expiry and notice passes (0: off)"
    )
    rules_job_interval: float = Field(
        default=3600.0, description="Seconds between birthday-bonus and tier-review passes (0 or less: off)"
    )
    reward_expiry_scan_interval: float = Field(
        default=30.0, gt=0, description="Seconds between passes releasing redemptions held past their hold"
    )


def load_settings(**overrides: object) -> LoyaltySettings:
    return load_service_settings(LoyaltySettings, **overrides)
