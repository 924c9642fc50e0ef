"""Tunable rules of the value/risk/ladder computation (`CRM_SEGMENTATION_VALUE_*`)."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ValueSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CRM_SEGMENTATION_VALUE_", extra="ignore")

    tier_shares: list[float] = Field(
        default=[0.01, 0.04, 0.15],
        description="Shares of the ranked population in the top, high and medium tiers; the rest is 'rest'",
    )
    lapse_multiple: float = Field(default=3.0, description="Lapsed after this many own intervals...")
    lapse_min_days: float = Field(default=180.0, description="...and never before this many days")
    default_interval_days: float = Field(
        default=90.0, description="Rhythm assumed for a customer with a single purchase"
    )
    trend_window_days: int = Field(default=180, description="Recent window compared with the one before")
    satisfaction_drop_threshold: float = Field(
        default=2.0,
        description="Falling satisfaction counts when the latest survey (0–10 scale) is at least this many "
        "points below the customer's own earlier average",
    )
    satisfaction_drop_full: float = Field(
        default=5.0,
        description="A fall of this many points (or more) gives falling satisfaction its full weight",
    )
    risk_medium: int = Field(default=30, description="Risk score from which the level is medium")
    risk_high: int = Field(default=60, description="Risk score from which the level is high")
    partner_min_purchases: int = Field(default=10, description="Purchases an advocate needs to be a partner")
    partner_min_tenure_days: int = Field(default=365, description="Days since first purchase for a partner")
    clv_horizon_months: int = Field(default=12, description="Predicted CLV horizon")
    clv_monthly_discount: float = Field(default=0.01, description="Monthly discount rate of predicted CLV")
    clv_min_repeat_customers: int = Field(
        default=20, description="Fewer repeat customers than this: no BG/NBD fit (tiers use historic CLV)"
    )
    clv_fit_sample: int = Field(default=200_000, description="At most this many customers feed the fit")
    recompute_interval_seconds: float = Field(default=86_400.0, description="Scheduled pass period")


@lru_cache(maxsize=1)
def load_value_settings() -> ValueSettings:
    return ValueSettings()
