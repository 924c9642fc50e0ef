"""Pooled PostgreSQL connections: pinged only after sitting idle, and a dead one is replaced unseen."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
from sqlalchemy import text

from shared import db
from tests.support.servers import PG_ADMIN_DSN


@pytest.fixture
def pings(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the dialect's pings (one entry per ping) and makes the idle threshold short."""
    monkeypatch.setattr(db, "PING_AFTER_IDLE_SECONDS", 0.2)
    calls: list[int] = []
    original = db.create_engine

    def counting(url: str, **kwargs: object) -> db.AsyncEngine:
        engine = original(url, **kwargs)  # type: ignore[arg-type]
        do_ping = engine.dialect.do_ping

        def ping(connection: object) -> bool:
            calls.append(1)
            return do_ping(connection)  # type: ignore[arg-type]

        engine.dialect.do_ping = ping  # type: ignore[method-assign]
        return engine

    monkeypatch.setattr(db, "create_engine", counting)
    return calls


async def _backend_pid(engine: db.AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one())


async def test_busy_connections_are_not_pinged(pg_database: str, pings: list[int]) -> None:
    engine = db.create_engine(pg_database, pool_size=1)
    try:
        pids = {await _backend_pid(engine) for _ in range(20)}
        assert len(pids) == 1  # the same pooled connection every time …
        assert pings == []  # … handed out without a round trip of its own
    finally:
        await engine.dispose()


async def test_idle_connection_is_pinged_and_a_dead_one_replaced(pg_database: str, pings: list[int]) -> None:
    engine = db.create_engine(pg_database, pool_size=1)
    try:
        first = await _backend_pid(engine)
        await asyncio.sleep(0.3)
        assert await _backend_pid(engine) == first  # idle: pinged, alive, kept
        assert len(pings) == 1

        admin = await asyncpg.connect(PG_ADMIN_DSN)
        try:  # the database drops the pooled connection while it sits idle (as a restart would)
            assert await admin.fetchval("SELECT pg_terminate_backend($1)", first)
        finally:
            await admin.close()
        await asyncio.sleep(0.3)

        second = await _backend_pid(engine)  # no error reaches the caller …
        assert second != first  # … who got a new connection
        assert len(pings) == 2
    finally:
        await engine.dispose()


async def _prepared_in_backend(engine: db.AsyncEngine, statements: int) -> int:
    """Run `statements` distinct SELECTs twice each on one connection; how many the backend holds."""
    async with engine.connect() as conn:
        for _ in range(2):
            for i in range(statements):
                await conn.execute(text(f"SELECT {i} AS n"))
        return int((await conn.execute(text("SELECT count(*) FROM pg_prepared_statements"))).scalar_one())


async def test_prepared_statements_kept_per_connection(pg_database: str) -> None:
    """Distinct SQL texts beyond the kept number are prepared again (a round trip and a parse each time):
    the default keeps far more than the driver's 100, and the setting reaches the connection."""
    default = db.create_engine(pg_database, pool_size=1)
    small = db.create_engine(pg_database, pool_size=1, statement_cache_size=5)
    try:
        # every one kept (the driver's 100 keeps at most 150: it trims back to 100 past half as many again)
        assert await _prepared_in_backend(default, 300) >= 300
        assert await _prepared_in_backend(small, 150) < 20  # the older ones closed as new ones came
    finally:
        await default.dispose()
        await small.dispose()
