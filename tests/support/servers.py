"""Server fixtures: real PostgreSQL and real Kafka, started by `make test` (deploy/*.sh).

A fresh database per test (created and dropped here) and fresh topics and consumer groups per
test (see tests/support/testbed.py), so tests never see each other's data, however long the
broker has been running. If a server is unreachable these tests fail — they do not skip.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
from aiokafka.admin import AIOKafkaAdminClient

PG_ADMIN_DSN = os.environ.get("CRM_TEST_PG_DSN", "postgresql://crm:crm@127.0.0.1:55432/postgres")
KAFKA = os.environ.get("CRM_TEST_KAFKA", "127.0.0.1:9092")


def sqlalchemy_url(dsn: str, database: str) -> str:
    base = dsn.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
    return f"{base}/{database}"


async def create_database(prefix: str = "t") -> str:
    name = f"{prefix}_{uuid.uuid4().hex[:16]}"
    try:
        conn = await asyncpg.connect(PG_ADMIN_DSN, timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.fail(
            f"PostgreSQL is not reachable at {PG_ADMIN_DSN} ({exc!r}); "
            "run `make test` or deploy/postgres.sh start"
        )
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return name


async def drop_database(name: str) -> None:
    conn = await asyncpg.connect(PG_ADMIN_DSN, timeout=5)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture
async def pg_database() -> AsyncIterator[str]:
    """A SQLAlchemy URL of a brand-new, empty database."""
    name = await create_database()
    yield sqlalchemy_url(PG_ADMIN_DSN, name)
    await drop_database(name)


@pytest.fixture
async def pg_database_2() -> AsyncIterator[str]:
    name = await create_database()
    yield sqlalchemy_url(PG_ADMIN_DSN, name)
    await drop_database(name)


@pytest.fixture(scope="session")
async def kafka() -> str:
    admin = AIOKafkaAdminClient(bootstrap_servers=KAFKA, request_timeout_ms=5000)
    try:
        await admin.start()
        await admin.list_topics()
    except Exception as exc:
        pytest.fail(f"Kafka is not reachable at {KAFKA} ({exc!r}); run `make test` or deploy/kafka.sh start")
    finally:
        await admin.close()
    return KAFKA


@pytest.fixture
def run_id() -> str:
    return uuid.uuid4().hex[:12]
