"""Gateway settings (`CRM_GATEWAY_*`, falling back to `CRM_*`)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.settings import Environment, PlatformSettings

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

    # --- customer 360 -------------------------------------------------------------------------
    customer360_part_timeout: float = Field(
        default=3.0, gt=0, le=60, description="Seconds each part of the 360 may take before it is unavailable"
    )
    customer360_timeline_limit: int = Field(default=20, ge=1, le=200)
    customer360_cache_seconds: float = Field(
        default=5.0,
        ge=0,
        le=60,
        description="How long a complete 360 is kept per customer and caller (0: not kept); an event about "
        "the customer consumed by this gateway drops it sooner. See services/gateway/cache360.py",
    )
    customer360_cache_entries: int = Field(default=10_000, ge=1, le=10_000_000)

    # --- limits ---------------------------------------------------------------------------------
    rate_limit_enabled: bool | None = Field(
        default=None,
        description=(
            "Rate limits on or off; unset: on except in development (where `crm demo` and the benchmarks "
            "load data through the gateway from one address)"
        ),
    )
    rate_limit_per_minute: int = Field(default=1200, ge=1, le=1_000_000)
    rate_limit_burst: int = Field(default=200, ge=1, le=1_000_000)
    rate_limit_login_per_minute: int = Field(default=10, ge=1, le=100_000)
    rate_limit_referral_per_minute: int = Field(default=10, ge=1, le=100_000)
    rate_limit_redemption_per_minute: int = Field(default=30, ge=1, le=100_000)
    rate_limit_max_clients: int = Field(
        default=100_000, ge=100, le=10_000_000, description="Idle buckets are dropped past this many"
    )
    trust_forwarded_for: bool = Field(
        default=False, description="Take the client IP from X-Forwarded-For (only behind a trusted proxy)"
    )
    max_body_bytes: int = Field(default=10 * 1024 * 1024, ge=1024, le=1024 * 1024 * 1024)
    max_page_size: int = Field(default=1000, ge=1, le=100_000)
    cors_origins: list[str] = Field(
        default_factory=list, description='JSON list, e.g. ["https://app.example"]'
    )
    cors_allow_credentials: bool = False

    # --- webhooks -------------------------------------------------------------------------------
    webhooks_enabled: bool = True
    database_url: str = Field(
        default="",
        description=(
            "The gateway's own database (webhook subscriptions and deliveries). Embedded mode defaults "
            "to `<var_dir>/gateway.db`; distributed mode runs webhooks only when this is set."
        ),
    )
    db_pool_size: int = Field(default=5, ge=1, le=200)
    run_migrations: bool = True
    consumer_max_attempts: int = Field(default=3, ge=1, le=100)
    webhooks_allow_http_localhost: bool = Field(
        default=False, description="Accept http://localhost and http://127.0.0.1 URLs (tests, local tools)"
    )
    webhook_max_attempts: int = Field(default=8, ge=1, le=50)
    webhook_backoff_seconds: float = Field(default=5.0, gt=0, le=3600, description="First retry delay")
    webhook_backoff_max_seconds: float = Field(default=3600.0, gt=0, le=86_400)
    webhook_timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    webhook_poll_interval: float = Field(default=1.0, gt=0, le=60)
    webhook_subscriptions_refresh_seconds: float = Field(
        default=1.0,
        gt=0,
        le=60,
        description="How often each gateway replica re-reads which event types have live subscriptions; "
        "events of other types are passed over without touching the database. A subscription created "
        "on another replica receives events from at most this long after its creation.",
    )
    webhook_batch_size: int = Field(default=50, ge=1, le=1000)

    # --- authentication (see services/gateway/auth) ---------------------------------------------
    auth_access_ttl_seconds: int = Field(default=900, ge=30, le=86_400, description="Access-token lifetime")
    auth_refresh_ttl_seconds: int = Field(default=14 * 86_400, ge=60, le=365 * 86_400)
    auth_apikey_token_ttl_seconds: int = Field(
        default=300, ge=10, le=3600, description="Lifetime of the JWT minted for an API-key request"
    )
    auth_key_max_age_seconds: int = Field(
        default=30 * 86_400, ge=60, le=365 * 86_400, description="Signing keys are rotated past this age"
    )
    auth_key_check_interval_seconds: float = Field(
        default=600.0, gt=0, le=86_400, description="How often the key store checks age and reloads keys"
    )
    auth_branch_cache_seconds: float = Field(
        default=30.0, ge=0, le=3600, description="How long a customer's branch is cached"
    )
    auth_apikey_cache_seconds: float = Field(
        default=5.0, ge=0, le=300, description="How long a verified API key is cached (revocation delay)"
    )
    audit_flush_interval: float = Field(default=0.2, gt=0, le=60)

    @property
    def rate_limits_on(self) -> bool:
        if self.rate_limit_enabled is not None:
            return self.rate_limit_enabled
        return self.environment is not Environment.DEVELOPMENT

    def upstream_urls(self) -> dict[str, str]:
        return {name: getattr(self, f"{name}_url") for name in SERVICES}

    def gateway_database_url(self, *, embedded: bool) -> str | None:
        """The gateway's own database: required when authentication is on (users, keys, audit)."""
        if self.database_url:
            return self.database_url
        if embedded:
            return f"sqlite+aiosqlite:///{self.var_dir / 'gateway.db'}"
        if self.auth_enabled:
            raise ValueError(
                "CRM_GATEWAY_DATABASE_URL is required in distributed mode: the gateway keeps users, "
                "keys and the audit log there"
            )
        return None

    def webhook_database_url(self, *, embedded: bool) -> str | None:
        """Where webhooks are stored, or None when they are off (distributed mode without a database)."""
        if not self.webhooks_enabled:
            return None
        if self.database_url:
            return self.database_url
        if embedded:
            return f"sqlite+aiosqlite:///{self.var_dir / 'gateway.db'}"
        return None


def load_settings(**overrides: object) -> GatewaySettings:
    from shared.settings import load_service_settings

    return load_service_settings(GatewaySettings, **overrides)
