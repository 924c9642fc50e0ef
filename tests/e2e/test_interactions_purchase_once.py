"""A purchase sent again — or by several requests at the same moment — is recorded once, on SQLite and on
PostgreSQL: one row, one set of lines, one timeline entry, one `purchase_recorded`, and every caller
gets the same purchase back."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from services.interactions import service
from services.interactions.app import build
from services.interactions.bulk_purchases import record_purchases_bulk
from services.interactions.directory import erased, remember
from services.interactions.schemas import PurchaseCreate, PurchaseOut
from services.interactions.settings import load_settings
from shared.errors import InvalidInput
from shared.messaging.bus import InProcessBus
from shared.migrations import upgrade
from shared.runtime import ServiceRuntime

ORDER: dict[str, Any] = {
    "customer_id": "c-1",
    "source_system": "pos",
    "external_id": "T-1",
    "currency": "EUR",
    "lines": [
        {"sku": "SHOE-1", "category": "shoes", "quantity": 2, "unit_price_minor": 4999},
        {"sku": "SOCK-1", "quantity": 3, "unit_price_minor": 500},
    ],
}


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'interactions.db'}"
    return str(request.getfixturevalue("pg_database"))


@pytest.fixture
async def runtime(database_url: str, tmp_path: Path) -> AsyncIterator[ServiceRuntime]:
    url = database_url
    runtime = build(load_settings(var_dir=tmp_path, database_url=url), InProcessBus())
    try:
        await upgrade(runtime.settings.database_url, runtime.migrations)
        async with runtime.uow() as uow:
            await remember(uow.session, "c-1")
            await uow.commit()
        yield runtime
    finally:
        await runtime.engine.dispose()


async def record(runtime: ServiceRuntime, **changes: Any) -> tuple[Any, bool]:
    data = PurchaseCreate.model_validate({**ORDER, **changes})
    return await service.record_purchase(runtime.uow(), runtime.app.state.directory, data)


async def counts(runtime: ServiceRuntime) -> dict[str, int]:
    async with runtime.engine.connect() as conn:
        out = {}
        for name, sql in {
            "purchases": "SELECT count(*) FROM purchases",
            "lines": "SELECT count(*) FROM purchase_lines",
            "timeline": "SELECT count(*) FROM interactions WHERE subject_type = 'purchase'",
            "events": "SELECT count(*) FROM outbox WHERE type = 'crm.interactions.purchase_recorded.v1'",
        }.items():
            out[name] = int((await conn.execute(text(sql))).scalar_one())
        return out


async def test_the_answer_is_the_purchase_as_stored(runtime: ServiceRuntime) -> None:
    created, is_new = await record(runtime)
    assert is_new
    stored = await service.get_purchase(runtime.uow(), created.id)
    answer = PurchaseOut.model_validate(created).model_dump()
    assert answer == PurchaseOut.model_validate(stored).model_dump()
    assert answer["total_minor"] == 2 * 4999 + 3 * 500
    assert [line["line_no"] for line in answer["lines"]] == [1, 2]
    assert await counts(runtime) == {"purchases": 1, "lines": 2, "timeline": 1, "events": 1}


async def test_concurrent_requests_for_one_purchase_record_it_once(runtime: ServiceRuntime) -> None:
    outcomes = await asyncio.gather(*(record(runtime) for _ in range(8)))
    assert len({purchase.id for purchase, _ in outcomes}) == 1
    assert sorted(is_new for _, is_new in outcomes) == [False] * 7 + [True]
    assert await counts(runtime) == {"purchases": 1, "lines": 2, "timeline": 1, "events": 1}
    again, is_new = await record(runtime)
    assert (again.id, is_new) == (outcomes[0][0].id, False)
    assert [line.sku for line in again.lines] == ["SHOE-1", "SOCK-1"]


async def test_without_an_external_id_each_call_is_a_purchase(runtime: ServiceRuntime) -> None:
    first, _ = await record(runtime, external_id=None)
    second, _ = await record(runtime, external_id=None)
    assert first.id != second.id
    assert await counts(runtime) == {"purchases": 2, "lines": 4, "timeline": 2, "events": 2}


async def test_a_repeat_after_the_customer_was_erased_returns_the_first(runtime: ServiceRuntime) -> None:
    first, _ = await record(runtime)
    async with runtime.uow() as uow:
        await erased(uow.session, ["c-1"], datetime.now(UTC))
        await uow.commit()
    again, is_new = await record(runtime)
    assert (again.id, is_new) == (first.id, False)
    with pytest.raises(InvalidInput) as refused:
        await record(runtime, external_id="T-2")
    assert refused.value.errors[0].field == "body.customer_id"
    assert (await counts(runtime))["purchases"] == 1


async def test_bulk_repeats_are_duplicates_with_the_first_ids(runtime: ServiceRuntime) -> None:
    """Found by one query whatever the batch size (on PostgreSQL: arrays joined with unnest)."""
    first, _ = await record(runtime, external_id="B-0")
    items = [{**ORDER, "external_id": f"B-{i}"} for i in range(1, 300)]
    created = await record_purchases_bulk(runtime.uow(), runtime.app.state.directory, items)
    assert created.created == 299
    ids = {item.index: item.id for item in created.items}
    again = await record_purchases_bulk(
        runtime.uow(),
        runtime.app.state.directory,
        [{**ORDER, "external_id": "B-0"}, *items[:150], {**ORDER, "external_id": "B-new"}],
    )
    assert [i.status for i in again.items] == ["duplicate"] * 151 + ["created"]
    assert again.items[0].id == first.id
    assert [i.id for i in again.items[1:151]] == [ids[i] for i in range(150)]
    assert (await counts(runtime))["purchases"] == 301
