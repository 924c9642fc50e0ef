"""Purchases and merges travel on different topics, so loyalty may see them in either order. Either
way, the points of a merged-away customer end up with the survivor."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from services.loyalty import ledger, programs
from services.loyalty.app import build
from services.loyalty.consumers import register
from services.loyalty.settings import load_settings
from shared.contracts.identity import CustomerMerged
from shared.contracts.interactions import PurchaseLine, PurchaseRecorded
from shared.messaging.bus import InProcessBus
from shared.runtime import ServiceRuntime


@pytest.fixture
async def runtime(tmp_path: Path) -> AsyncIterator[ServiceRuntime]:
    rt = build(load_settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'loyalty.db'}"), InProcessBus())
    await rt.start()
    try:
        yield rt
    finally:
        await rt.stop()


def purchase(customer_id: str, minor: int = 2500) -> PurchaseRecorded:
    return PurchaseRecorded(
        purchase_id=str(uuid.uuid4()),
        customer_id=customer_id,
        channel="store",
        occurred_at=datetime.now(UTC),
        currency="EUR",
        total_minor=minor,
        lines=[PurchaseLine(sku="SKU-1", quantity=1, unit_price_minor=minor)],
    )


def merge(survivor: str, absorbed: str) -> CustomerMerged:
    return CustomerMerged(
        customer_id=survivor,
        merged_id=absorbed,
        merge_id=str(uuid.uuid4()),
        method="manual",
        merged_at=datetime.now(UTC),
    )


async def handle(runtime: ServiceRuntime, payload: object) -> None:
    """Deliver one event to loyalty's own handler for it (as its consumer would), in a transaction."""
    handlers: dict[type, object] = {}

    class _Collect:
        def on(self, event_type: type) -> object:
            def decorate(fn: object) -> object:
                handlers[event_type] = fn
                return fn

            return decorate

        def on_many(self, event_type: type) -> object:  # runs of events: not what this test drives
            return lambda fn: fn

    register(_Collect())  # type: ignore[arg-type]
    async with runtime.uow() as uow:
        await handlers[type(payload)](uow, payload, None)  # type: ignore[operator]
        await uow.commit()


async def points(runtime: ServiceRuntime, customer_id: str) -> int | None:
    async with runtime.sessions() as session:
        member = await ledger.member_of(session, programs.DEFAULT_PROGRAM, customer_id)
        return None if member is None else (await ledger.balances(session, member.id))["available"]


@pytest.mark.parametrize("merge_first", [True, False])
async def test_points_reach_the_survivor_whatever_the_order(
    runtime: ServiceRuntime, merge_first: bool
) -> None:
    a, b = str(uuid.uuid4()), str(uuid.uuid4())
    events: list[object] = [purchase(b), merge(a, b)]
    if merge_first:
        events.reverse()
    for event in events:
        await handle(runtime, event)
    await handle(runtime, purchase(a))
    assert await points(runtime, a) == 50
    assert (await points(runtime, b)) in (None, 0)
    async with runtime.sessions() as session:
        assert (await ledger.check(session)).ok


async def test_a_merged_id_resolves_through_chains(runtime: ServiceRuntime) -> None:
    a, b, c = (str(uuid.uuid4()) for _ in range(3))
    await handle(runtime, merge(b, c))
    await handle(runtime, merge(a, b))
    await handle(runtime, purchase(c))
    assert await points(runtime, a) == 25


def _handlers() -> dict[type, Any]:
    found: dict[type, Any] = {}

    class _Collect:
        def on(self, event_type: type) -> Any:
            def decorate(fn: Any) -> Any:
                found[event_type] = fn
                return fn

            return decorate

        def on_many(self, event_type: type) -> Any:  # runs of events: not what this test drives
            return lambda fn: fn

    register(_Collect())  # type: ignore[arg-type]
    return found


@pytest.mark.parametrize("merge_first", [True, False])
async def test_a_purchase_and_a_merge_handled_at_the_same_moment_serialise(
    pg_database: str, merge_first: bool
) -> None:
    """Two replicas on PostgreSQL: one handles the merge, the other a purchase for the merged-away id,
    at once. The second waits for the first's transaction (the known-customer row is the lock) and
    then sees its effect, so the points end with the survivor in both interleavings. Without the lock
    the purchase read 'not merged' and earned for the absorbed customer after the merge had moved its
    (then empty) memberships."""
    rt = build(load_settings(database_url=pg_database), InProcessBus())
    await rt.start()
    try:
        a, b = str(uuid.uuid4()), str(uuid.uuid4())
        first, second = (merge(a, b), purchase(b)) if merge_first else (purchase(b), merge(a, b))
        handlers = _handlers()
        async with rt.uow() as uow:
            await handlers[type(first)](uow, first, None)
            waiting = asyncio.create_task(handle(rt, second))
            await asyncio.sleep(0.5)
            assert not waiting.done(), "the second handler did not wait for the first's transaction"
            await uow.commit()
        await asyncio.wait_for(waiting, 10)
        assert await points(rt, a) == 25
        assert (await points(rt, b)) in (None, 0)
        async with rt.sessions() as session:
            assert (await ledger.check(session)).ok
    finally:
        await rt.stop()
