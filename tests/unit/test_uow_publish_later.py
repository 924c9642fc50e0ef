"""`UnitOfWork.publish_later`: an event built when the `deferred_publishing` block ends (from what is
known only then), written to the outbox in its place among the block's events."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import MetaData, select

from shared.contracts.identity import CustomerRegistered
from shared.db import create_engine, session_factory
from shared.messaging.tables import messaging_tables
from shared.uow import UnitOfWorkFactory

pytestmark = pytest.mark.unit

METADATA = MetaData()
TABLES = messaging_tables(METADATA)
AT = datetime(2026, 5, 1, tzinfo=UTC)


def registered(customer_id: str) -> CustomerRegistered:
    return CustomerRegistered(customer_id=customer_id, kind="person", status="prospect", registered_at=AT)


@pytest.fixture
async def uows(tmp_path: Path) -> AsyncIterator[UnitOfWorkFactory]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'uow.db'}")
    async with engine.begin() as conn:
        await conn.run_sync(METADATA.create_all)
    yield UnitOfWorkFactory(session_factory(engine), TABLES, source="/crm/test")
    await engine.dispose()


async def test_built_at_the_end_of_the_block_in_its_place(uows: UnitOfWorkFactory) -> None:
    known_later = {"id": "not yet"}
    async with uows() as uow:
        async with uow.deferred_publishing():
            await uow.publish(registered("first"))
            uow.publish_later(lambda: registered(known_later["id"]))
            await uow.publish(registered("third"))
            known_later["id"] = "second"  # what the builder reads is settled only now
        await uow.commit()
        rows = (await uow.session.execute(select(TABLES.outbox).order_by(TABLES.outbox.c.id))).all()
    assert [r.envelope["data"]["customer_id"] for r in rows] == ["first", "second", "third"]
    assert rows[1].type.startswith("crm.identity.customer_registered")
    assert rows[1].key == "second"


async def test_not_built_when_the_block_raises(uows: UnitOfWorkFactory) -> None:
    built: list[str] = []

    def build() -> CustomerRegistered:
        built.append("x")
        return registered("x")

    async with uows() as uow:
        with pytest.raises(RuntimeError, match="boom"):
            async with uow.deferred_publishing():
                uow.publish_later(build)
                raise RuntimeError("boom")
        await uow.commit()
        rows = (await uow.session.execute(select(TABLES.outbox))).all()
    assert built == []
    assert rows == []


async def test_refused_outside_a_deferred_block(uows: UnitOfWorkFactory) -> None:
    async with uows() as uow:
        with pytest.raises(RuntimeError, match="deferred_publishing"):
            uow.publish_later(lambda: registered("x"))
