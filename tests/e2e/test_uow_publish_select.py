"""`UnitOfWork.publish_select`: one event per row of a SELECT. On PostgreSQL the envelopes are made in
the database from a template; they must be the envelopes `publish_many` writes for the same payloads
(apart from the event ids and the moment they were made), on PostgreSQL and on SQLite alike."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, insert, select

from shared.contracts.segmentation import SegmentEntered
from shared.contracts.segmentation_value import CustomerAtRisk, LadderStageChanged
from shared.db import create_engine, session_factory
from shared.messaging.tables import messaging_tables
from shared.uow import UnitOfWorkFactory

METADATA = MetaData()
TABLES = messaging_tables(METADATA)
SOURCE_ROWS = Table(
    "moves",
    METADATA,
    Column("n", Integer, primary_key=True),
    Column("customer_id", String(40)),
    Column("from_stage", String(20)),
    Column("to_stage", String(20)),
    Column("reason", String(200)),
)
AT = datetime(2026, 5, 1, 12, 30, 0, 123456, tzinfo=UTC)
# Values that need escaping in JSON, and non-ASCII text.
MOVES = [
    {
        "n": 1,
        "customer_id": "c-1",
        "from_stage": "prospect",
        "to_stage": "customer",
        "reason": "up: one purchase",
    },
    {
        "n": 2,
        "customer_id": 'c-"2"',
        "from_stage": "client",
        "to_stage": "customer",
        "reason": "down: \\ \n\t ünïcödé ✓",
    },
    {"n": 3, "customer_id": "c-3", "from_stage": "customer", "to_stage": "client", "reason": "%(x)s :y $1"},
]


@pytest.fixture(params=["sqlite", "postgresql"])
async def uows(
    request: pytest.FixtureRequest, tmp_path: Path, pg_database: str
) -> AsyncIterator[UnitOfWorkFactory]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'uow.db'}" if request.param == "sqlite" else pg_database
    engine = create_engine(url)
    async with engine.begin() as conn:
        await conn.run_sync(METADATA.create_all)
        await conn.execute(insert(SOURCE_ROWS), MOVES)
    yield UnitOfWorkFactory(session_factory(engine), TABLES, source="/crm/test")
    await engine.dispose()


def comparable(envelope: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in envelope.items() if k not in ("id", "time")}


async def outbox(uow: Any) -> list[Any]:
    return list((await uow.session.execute(select(TABLES.outbox).order_by(TABLES.outbox.c.id))).all())


async def test_the_same_outbox_rows_as_publish_many(uows: UnitOfWorkFactory) -> None:
    rows = select(
        SOURCE_ROWS.c.customer_id, SOURCE_ROWS.c.from_stage, SOURCE_ROWS.c.to_stage, SOURCE_ROWS.c.reason
    ).order_by(SOURCE_ROWS.c.n)
    async with uows() as uow:
        count = await uow.publish_select(LadderStageChanged, rows, {"at": AT})
        await uow.commit()
        selected = await outbox(uow)
    async with uows() as uow:
        await uow.session.execute(TABLES.outbox.delete())
        await uow.publish_many(
            [
                LadderStageChanged(
                    customer_id=m["customer_id"],
                    from_stage=m["from_stage"],
                    to_stage=m["to_stage"],
                    reason=m["reason"],
                    at=AT,
                )
                for m in MOVES
            ]
        )
        await uow.commit()
        many = await outbox(uow)
    assert count == 3
    assert [comparable(r.envelope) for r in selected] == [comparable(r.envelope) for r in many]
    assert [(r.topic, r.key, r.type) for r in selected] == [(r.topic, r.key, r.type) for r in many]
    for row in selected:  # each its own id, the same in the column and in the envelope
        assert row.event_id == row.envelope["id"]
    assert len({r.event_id for r in selected}) == 3
    # The stored envelope is a valid event of its type.
    assert LadderStageChanged.model_validate(selected[1].envelope["data"]).reason == MOVES[1]["reason"]


async def test_constants_an_integer_and_no_rows(uows: UnitOfWorkFactory) -> None:
    rows = select(SOURCE_ROWS.c.customer_id, SOURCE_ROWS.c.n.label("risk_score")).order_by(SOURCE_ROWS.c.n)
    constants = {"previous_level": "medium", "value_tier": "top", "reasons": [], "at": AT}
    async with uows() as uow:
        assert await uow.publish_select(CustomerAtRisk, rows, constants) == 3
        entered = select(SOURCE_ROWS.c.customer_id).where(SOURCE_ROWS.c.n > 5)
        assert (
            await uow.publish_select(
                SegmentEntered, entered, {"segment_id": "s", "segment_name": "S", "at": AT, "cause": "event"}
            )
            == 0
        )
        await uow.commit()
        stored = await outbox(uow)
    assert [r.envelope["data"]["risk_score"] for r in stored] == [1, 2, 3]
    assert stored[0].envelope["data"]["previous_level"] == "medium"
    assert [r.key for r in stored] == ["c-1", 'c-"2"', "c-3"]


async def test_a_column_that_is_not_a_field_is_refused(uows: UnitOfWorkFactory) -> None:
    async with uows() as uow:
        with pytest.raises(ValueError, match="LadderStageChanged"):
            await uow.publish_select(LadderStageChanged, select(SOURCE_ROWS.c.n), {"at": AT})
