"""Service settings from environment variables (pydantic-settings), one prefix per service.

Every service reads `CRM_<SERVICE>_*` first and falls back to the platform-wide `CRM_*` variables
for what they share (environment, bus, Kafka address). Outside development, settings that would
be unsafe (the development signing secret, a SQLite database, the in-process bus) are refused at
start-up rather than discovered in production.
"""

from __future__ import annotations

import os
from enum import StrEnum
from pathlib import Path
from typing import Any, Self, TypeVar

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_SECRET = "dev-insecure-secret-change-me"


class Environment(StrEnum):
    DEVELOPMENT = "development"
    TEST = "test"
    PRODUCTION = "production"


class BusBackend(StrEnum):
    IN_PROCESS = "inprocess"
    KAFKA = "kafka"


def default_var_dir() -> Path:
    """Where embedded mode keeps its SQLite files: `./var` of the working directory."""
    return Path.cwd() / "var"


class PlatformSettings(BaseSettings):
    """What every service and the gateway share. Read from `CRM_*`."""

    model_config = SettingsConfigDict(env_prefix="CRM_", extra="ignore", env_file=".env")

    environment: Environment = Environment.DEVELOPMENT
    bus: BusBackend = BusBackend.IN_PROCESS
    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    kafka_topic_partitions: int = Field(default=6, ge=1, le=1024)
    kafka_replication_factor: int = Field(default=1, ge=1, le=7)
    kafka_fetch_max_wait_ms: int = Field(
        default=100,
        ge=0,
        le=10_000,
        description="How long a consumer's fetch may wait on the broker for `kafka_fetch_min_bytes` of new "
        "events before it returns what there is. A batch handler's cost is mostly per batch, so under "
        "a steady trickle waiting a little gives it several events at once: at 60 purchases/s, 100 ms "
        "took the platform's CPU per purchase from 32 to 21 ms. It adds at most this much to each "
        "hop's latency when events are few; 0 hands over every event at once.",
    )
    kafka_fetch_min_bytes: int = Field(
        default=65_536,
        ge=1,
        le=52_428_800,
        description="New event bytes a consumer's fetch waits for (at most `kafka_fetch_max_wait_ms`); "
        "64 KiB is about a hundred purchase events.",
    )
    var_dir: Path = Field(default_factory=default_var_dir)
    secret_key: SecretStr = SecretStr(DEV_SECRET)
    log_level: str = "INFO"
    log_json: bool = True

    # --- tracing (see shared/telemetry.py) -------------------------------------------------------
    otel_exporter: str = Field(
        default="none",
        pattern="^(none|console|otlp|memory)$",
        description=(
            "`CRM_OTEL_EXPORTER`: where spans go: none (tracing off, a no-op tracer), console, otlp "
            "(OTLP/HTTP to `CRM_OTEL_ENDPOINT`) or memory (tests and benchmarks)"
        ),
    )
    otel_endpoint: str = Field(
        default="http://127.0.0.1:4318/v1/traces", description="`CRM_OTEL_ENDPOINT`: the OTLP/HTTP traces URL"
    )
    otel_sample_ratio: float = Field(
        default=1.0, ge=0, le=1, description="Share of new traces recorded (parent-based: a trace is whole)"
    )

    # --- overload ----------------------------------------------------------------------------------
    max_in_flight: int = Field(
        default=256,
        ge=0,
        le=100_000,
        description=(
            "`CRM_MAX_IN_FLIGHT`: requests an app (each service, the gateway) works on at once; beyond, "
            "an immediate 503 problem+json with Retry-After instead of a queue that makes every request "
            "slow (0: no limit). Health, readiness and metrics are never refused."
        ),
    )

    # --- authentication (see shared/auth) ------------------------------------------------------
    auth_enabled: bool = Field(
        default=True,
        description=(
            "Every request needs a valid token (`CRM_AUTH_ENABLED`). Switching it off is for local "
            "development only: refused when CRM_ENVIRONMENT=production, and loudly logged."
        ),
    )
    auth_issuer: str = "crm-gateway"
    auth_audience: str = "crm"
    auth_jwks_url: str = Field(
        default="http://127.0.0.1:8000/auth/jwks.json",
        description="Where a service alone (distributed mode) fetches the gateway's public keys",
    )
    auth_jwks_cache_seconds: float = Field(default=300.0, gt=0, le=86_400)
    auth_jwks_min_refetch_seconds: float = Field(
        default=10.0, ge=0, le=3600, description="At most one JWKS fetch this often (unknown `kid`s)"
    )
    auth_leeway_seconds: float = Field(default=5.0, ge=0, le=300)
    auth_client_id: str = Field(
        default="", description="A service's own client credentials, for calls outside a request"
    )
    auth_client_secret: SecretStr = SecretStr("")
    auth_token_url: str = Field(default="http://127.0.0.1:8000/auth/token")
    admin_password: SecretStr = Field(
        default=SecretStr(""),
        description="`CRM_ADMIN_PASSWORD`: the first `admin` user's password (else generated, printed once)",
    )

    @property
    def is_development(self) -> bool:
        return self.environment is not Environment.PRODUCTION

    @model_validator(mode="after")
    def _refuse_insecure_defaults(self) -> Self:
        if self.environment is Environment.PRODUCTION:
            problems: list[str] = []
            if (
                self.secret_key.get_secret_value() == DEV_SECRET
                or len(self.secret_key.get_secret_value()) < 32
            ):
                problems.append("CRM_SECRET_KEY must be set to a random value of at least 32 characters")
            if self.bus is BusBackend.IN_PROCESS:
                problems.append("CRM_BUS=inprocess is for embedded development only; use kafka")
            if not self.auth_enabled:
                problems.append("CRM_AUTH_ENABLED=false is for local development only")
            if problems:
                raise ValueError("; ".join(problems))
        return self


class ServiceSettings(PlatformSettings):
    """Settings of one service. Subclasses set `env_prefix` to `CRM_<SERVICE>_` and `service_name`."""

    service_name: str = "service"
    database_url: str = ""
    db_pool_size: int = Field(
        default=40,
        ge=1,
        le=200,
        description="Most PostgreSQL connections a service process opens: opened as they are needed, then "
        "kept. Requests beyond that many at once wait for one (a 503 past 30 s). None is opened for a "
        "burst and closed after it: such connections cost a process and an authentication on the "
        "server each time, and under a saturating load (purchases with customer 360s) they ran "
        "latencies from tens of milliseconds to seconds.",
    )
    db_statement_cache_size: int = Field(
        default=250,
        ge=0,
        le=100_000,
        description="Prepared statements kept per PostgreSQL connection (0: none). Every distinct SQL text "
        "is one, kept in the server's memory, and one not kept is prepared again (a round trip and a "
        "parse). Batch statements are padded to a few lengths (`shared.db.padded`) so that they fit.",
    )
    run_migrations: bool = True
    outbox_batch_size: int = Field(default=500, ge=1, le=10_000)
    outbox_poll_interval: float = Field(default=0.5, gt=0, le=60)
    consumer_batch_size: int = Field(default=500, ge=1, le=10_000)
    consumer_max_attempts: int = Field(default=3, ge=1, le=100)

    @model_validator(mode="after")
    def _default_database(self) -> Self:
        if not self.database_url:
            self.database_url = f"sqlite+aiosqlite:///{self.var_dir / (self.service_name + '.db')}"
        if self.environment is Environment.PRODUCTION and self.database_url.startswith("sqlite"):
            raise ValueError(f"{self.service_name}: a SQLite database is for embedded development only")
        return self

    @property
    def consumer_group(self) -> str:
        return f"crm-{self.service_name}"


SettingsT = TypeVar("SettingsT", bound=PlatformSettings)


def load_service_settings(cls: type[SettingsT], **overrides: Any) -> SettingsT:
    """Build a service's settings: `CRM_<SERVICE>_X` wins over the platform-wide `CRM_X`; code wins over both.

    Only platform values that were set explicitly (in the environment or `.env`) are inherited, so
    a service's own defaults still apply where nothing was said.
    """
    prefix = str(cls.model_config.get("env_prefix", "")).upper()
    platform = PlatformSettings()
    inherited = {
        name: getattr(platform, name)
        for name in platform.model_fields_set
        if f"{prefix}{name}".upper() not in os.environ
    }
    return cls(**{**inherited, **overrides})
