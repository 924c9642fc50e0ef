"""The gateway's database on PostgreSQL (distributed mode): its migrations build exactly what its models
declare and run both ways, and the webhook hub records, deduplicates and sends deliveries there."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.ext.asyncio import create_async_engine

from services.gateway.settings import load_settings
from services.gateway.webhooks.hub import MIGRATIONS, WebhookHub
from services.gateway.webhooks.models import metadata
from services.gateway.webhooks.schemas import SubscriptionIn
from services.gateway.webhooks.signing import verify
from shared.contracts.interactions import PurchaseRecorded
from shared.events.envelope import CloudEvent
from shared.messaging.bus import InProcessBus
from shared.messaging.consumer import Delivery
from shared.migrations import alembic_config, upgrade

PURCHASED = "crm.interactions.purchase_recorded.v1"


async def test_migrations_match_the_models(pg_database: str) -> None:
    await upgrade(pg_database, MIGRATIONS)
    engine = create_async_engine(pg_database)
    try:
        async with engine.connect() as conn:
            diffs = await conn.run_sync(
                lambda sync: compare_metadata(
                    MigrationContext.configure(sync, opts={"compare_type": True}), metadata
                )
            )
    finally:
        await engine.dispose()
    assert diffs == [], f"models and migrations disagree: {diffs}"


async def test_downgrade_then_upgrade_again(pg_database: str) -> None:
    await upgrade(pg_database, MIGRATIONS)
    await asyncio.to_thread(command.downgrade, alembic_config(pg_database, Path(MIGRATIONS)), "base")
    engine = create_async_engine(pg_database)
    try:
        async with engine.connect() as conn:
            tables = await conn.run_sync(lambda sync: inspect(sync).get_table_names())
    finally:
        await engine.dispose()
    assert set(tables) <= {"alembic_version"}
    await upgrade(pg_database, MIGRATIONS)


@pytest.fixture
async def hub(pg_database: str, tmp_path: Path) -> AsyncIterator[tuple[WebhookHub, list[httpx.Request]]]:
    received: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        received.append(request)
        return httpx.Response(500 if len(received) == 1 else 204)

    # A backoff long enough that "not due yet" holds on a busy machine, short enough to wait out.
    settings = load_settings(var_dir=tmp_path, database_url=pg_database, webhook_backoff_seconds=1.0)
    hub = WebhookHub(
        settings, pg_database, bus=InProcessBus(), owns_bus=False, transport=httpx.MockTransport(answer)
    )
    await hub.migrate()
    try:
        yield hub, received
    finally:
        await hub.stop()


async def test_deliveries_on_postgres(hub: tuple[WebhookHub, list[httpx.Request]]) -> None:
    webhooks, received = hub
    subscription = await webhooks.create(
        SubscriptionIn(url="https://erp.example.com/hook", event_types=[PURCHASED])
    )
    event = CloudEvent(
        source="/crm/interactions",
        type=PURCHASED,
        subject="c-1",
        data={
            "purchase_id": "p-1",
            "customer_id": "c-1",
            "currency": "EUR",
            "total_minor": 100,
            "occurred_at": "2026-01-01T10:00:00Z",
            "channel": "store",
            "lines": [],
        },
    )
    delivery = Delivery(event=event, topic=PurchaseRecorded.topic.name)
    assert await webhooks.consumer.handle_batch([delivery]) == []
    assert await webhooks.consumer.handle_batch([delivery]) == []  # redelivered: skipped
    assert await webhooks.send_due() == 1  # fails once (500)
    assert await webhooks.send_due() == 0  # not due yet
    await asyncio.sleep(1.1)
    assert await webhooks.send_due() == 1
    (logged,) = await webhooks.deliveries(subscription.id)
    assert logged.status == "delivered"
    assert [a.status_code for a in logged.attempt_log] == [500, 204]
    assert all(verify(subscription.secret, r.content, r.headers["x-crm-signature"]) for r in received)
    assert {r.headers["x-crm-event-id"] for r in received} == {event.id}
