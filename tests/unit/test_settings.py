"""Settings: one prefix per service, platform-wide fallbacks, insecure defaults refused in production."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.identity.settings import IdentitySettings, load_settings
from shared.settings import BusBackend, Environment, PlatformSettings

STRONG = "x" * 40


class TestProductionRefusesInsecureDefaults:
    def test_development_secret(self) -> None:
        with pytest.raises(ValidationError, match="CRM_SECRET_KEY"):
            PlatformSettings(environment=Environment.PRODUCTION, bus=BusBackend.KAFKA)

    def test_in_process_bus(self) -> None:
        with pytest.raises(ValidationError, match="inprocess"):
            PlatformSettings(environment=Environment.PRODUCTION, secret_key=STRONG)  # type: ignore[arg-type]

    def test_sqlite_database(self) -> None:
        with pytest.raises(ValidationError, match="SQLite"):
            IdentitySettings(environment=Environment.PRODUCTION, secret_key=STRONG, bus=BusBackend.KAFKA)  # type: ignore[arg-type]

    def test_a_proper_production_configuration_is_accepted(self) -> None:
        settings = IdentitySettings(
            environment=Environment.PRODUCTION,
            secret_key=STRONG,
            bus=BusBackend.KAFKA,  # type: ignore[arg-type]
            database_url="postgresql+asyncpg://crm@db/identity",
        )
        assert settings.consumer_group == "crm-identity"


class TestPrefixes:
    def test_service_prefix_wins_over_platform(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("CRM_KAFKA_BOOTSTRAP_SERVERS", "platform:9092")
        monkeypatch.setenv("CRM_IDENTITY_KAFKA_BOOTSTRAP_SERVERS", "identity:9092")
        monkeypatch.setenv("CRM_BUS", "kafka")
        settings = load_settings()
        assert settings.kafka_bootstrap_servers == "identity:9092"
        assert settings.bus is BusBackend.KAFKA

    def test_code_overrides_win_over_environment(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("CRM_IDENTITY_DATABASE_URL", "postgresql+asyncpg://env/db")
        assert (
            load_settings(database_url="sqlite+aiosqlite:///x.db").database_url == "sqlite+aiosqlite:///x.db"
        )

    def test_embedded_default_is_a_sqlite_file_per_service(self, tmp_path: object) -> None:
        settings = load_settings(var_dir=tmp_path)
        assert settings.database_url.endswith("/identity.db")
        assert settings.database_url.startswith("sqlite+aiosqlite:///")


class TestDatabasePool:
    def test_a_service_keeps_its_connections_and_opens_none_for_a_burst(self) -> None:
        from services.loyalty.app import build
        from services.loyalty.settings import load_settings as loyalty_settings
        from shared.messaging.bus import InProcessBus

        runtime = build(
            loyalty_settings(database_url="postgresql+asyncpg://crm@db/loyalty", db_pool_size=7),
            InProcessBus(),
        )
        pool = runtime.engine.sync_engine.pool
        assert pool.size() == 7  # type: ignore[attr-defined]
        assert pool._max_overflow == 0  # type: ignore[attr-defined]

    def test_the_default_is_forty(self) -> None:
        assert load_settings().db_pool_size == 40
