"""Redemptions under concurrency on real PostgreSQL, over HTTP (the loyalty app on httpx's ASGI
transport, many requests in flight at once on a pool of connections):

- 100 concurrent redemptions against a member who can afford exactly 7: exactly 7 succeed, 93 are
  refused with 409 insufficient-points, the balance ends at 0 and is never seen below 0, the ledger
  proves balanced, the reward's held stock is exactly 7;
- many members racing for a reward with little stock: it is never oversold;
- confirm, cancel and the expiry job racing over the same reservations: each ends in exactly one
  state, nothing deadlocks, stock and books agree.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update

from services.loyalty import ledger
from services.loyalty.app import build
from services.loyalty.models import Account
from services.loyalty.rewards import jobs
from services.loyalty.rewards.models import Redemption
from services.loyalty.settings import load_settings
from shared.messaging.bus import InProcessBus
from shared.runtime import ServiceRuntime

PROGRAM = "race"
COST = 130


@pytest.fixture
async def runtime(pg_database: str) -> AsyncIterator[ServiceRuntime]:
    rt = build(load_settings(database_url=pg_database, db_pool_size=20), InProcessBus())
    await rt.start()
    try:
        yield rt
    finally:
        await rt.stop()


@pytest.fixture
async def api(runtime: ServiceRuntime) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=runtime.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://loyalty", timeout=120) as client:
        created = await client.post("/programs", json={"id": PROGRAM, "name": "Race"})
        assert created.status_code == 201, created.text
        yield client


async def member(api: httpx.AsyncClient, points: int) -> str:
    response = await api.post(f"/programs/{PROGRAM}/members", json={"customer_id": str(uuid.uuid4())})
    assert response.status_code == 201, response.text
    member_id = str(response.json()["id"])
    # Several lots, so that reservations consume (and cancellations restore) more than one.
    parts = [points // 3, points // 3, points - 2 * (points // 3)]
    for part in parts:
        granted = await api.post(
            f"/programs/{PROGRAM}/members/{member_id}/adjustments", json={"points": part, "reason": "seed"}
        )
        assert granted.status_code == 201, granted.text
    return member_id


async def reward(api: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    body = {"kind": "voucher", "name": "Voucher", "cost_points": COST, **fields}
    response = await api.post(f"/programs/{PROGRAM}/rewards", json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


async def books(runtime: ServiceRuntime) -> ledger.CheckReport:
    async with runtime.sessions() as session:
        return await ledger.check(session)


async def test_100_concurrent_redemptions_exactly_7_succeed(
    api: httpx.AsyncClient, runtime: ServiceRuntime
) -> None:
    member_id = await member(api, 7 * COST)
    prize = await reward(api, stock=50)
    account = ledger.member_account(member_id)
    lowest: list[int] = []
    done = asyncio.Event()

    async def watch() -> None:  # reads the committed balance all along: it never goes below zero
        async with runtime.sessions() as session:
            while not done.is_set():
                balance = await session.scalar(select(Account.balance).where(Account.id == account))
                lowest.append(int(balance or 0))
                await session.rollback()
                await asyncio.sleep(0.005)

    async def attempt(i: int) -> httpx.Response:
        return await api.post(
            f"/programs/{PROGRAM}/members/{member_id}/redemptions",
            json={"reward_id": prize["id"]},
            headers={"Idempotency-Key": f"attempt-{i}"},
        )

    watcher = asyncio.create_task(watch())
    started = time.perf_counter()
    responses = await asyncio.gather(*(attempt(i) for i in range(100)))
    elapsed = time.perf_counter() - started
    done.set()
    await watcher

    statuses = Counter(r.status_code for r in responses)
    assert statuses == {201: 7, 409: 93}, [r.text for r in responses if r.status_code not in (201, 409)]
    refusals = [r.json() for r in responses if r.status_code == 409]
    assert all(p["type"].endswith("/insufficient-points") for p in refusals), refusals[:3]
    assert lowest
    assert min(lowest) >= 0
    member_state = (await api.get(f"/programs/{PROGRAM}/members/{member_id}")).json()["balances"]
    assert member_state["available"] == 0
    assert member_state["reserved"] == 7 * COST
    state = (await api.get(f"/programs/{PROGRAM}/rewards/{prize['id']}")).json()
    assert (state["stock"], state["reserved"], state["available"]) == (50, 7, 43)
    report = await books(runtime)
    assert report.ok, report

    # The seven confirm concurrently; the held units are consumed, nothing else moves.
    reserved = [r.json()["id"] for r in responses if r.status_code == 201]
    confirmed = await asyncio.gather(*(api.post(f"/redemptions/{rid}/confirm") for rid in reserved))
    assert [c.status_code for c in confirmed] == [200] * 7
    codes = {c.json()["voucher_code"] for c in confirmed}
    assert len(codes) == 7
    state = (await api.get(f"/programs/{PROGRAM}/rewards/{prize['id']}")).json()
    assert (state["stock"], state["reserved"]) == (43, 0)
    member_state = (await api.get(f"/programs/{PROGRAM}/members/{member_id}")).json()["balances"]
    assert (member_state["available"], member_state["reserved"]) == (0, 0)
    report = await books(runtime)
    assert report.ok, report
    print(f"\n100 concurrent redemptions on PostgreSQL: {elapsed:.2f}s")


async def test_stock_is_never_oversold_under_concurrency(
    api: httpx.AsyncClient, runtime: ServiceRuntime
) -> None:
    scarce = await reward(api, stock=5, per_member_limit=1)
    members = [await member(api, 3 * COST) for _ in range(30)]

    async def attempt(member_id: str, now: bool) -> httpx.Response:
        return await api.post(
            f"/programs/{PROGRAM}/members/{member_id}/redemptions",
            json={"reward_id": scarce["id"], "confirm": now},
        )

    # Every member tries twice at once (one reserve, one redeem-now): the limit and the stock hold.
    responses = await asyncio.gather(*(attempt(m, now) for m in members for now in (False, True)))
    statuses = Counter(r.status_code for r in responses)
    assert statuses[201] == 5, statuses
    assert statuses[201] + statuses[409] + statuses[422] == 60, [r.text for r in responses][:3]
    rules = Counter(r.json().get("rule") for r in responses if r.status_code != 201)
    assert set(rules) <= {"reward.out_of_stock", "reward.member_limit"}, rules
    winners = Counter(r.json()["member_id"] for r in responses if r.status_code == 201)
    assert max(winners.values()) == 1  # at most one per member
    state = (await api.get(f"/programs/{PROGRAM}/rewards/{scarce['id']}")).json()
    confirmed_now = sum(1 for r in responses if r.status_code == 201 and r.json()["status"] == "confirmed")
    assert state["stock"] == 5 - confirmed_now
    assert state["reserved"] == 5 - confirmed_now
    assert state["available"] == 0
    report = await books(runtime)
    assert report.ok, report


async def test_confirm_cancel_and_expiry_race_without_deadlock(
    api: httpx.AsyncClient, runtime: ServiceRuntime
) -> None:
    prize = await reward(api, stock=100, cost_points=10)
    members = [await member(api, 60) for _ in range(5)]
    reservations: list[str] = []
    for member_id in members:
        for _ in range(4):
            response = await api.post(
                f"/programs/{PROGRAM}/members/{member_id}/redemptions", json={"reward_id": prize["id"]}
            )
            assert response.status_code == 201, response.text
            reservations.append(response.json()["id"])
    async with runtime.uow() as uow:  # every hold ran out a moment ago: the job may take any of them
        await uow.session.execute(
            update(Redemption).values(expires_at=datetime.now(UTC) - timedelta(milliseconds=1))
        )
        await uow.commit()

    async def confirm_as_if_in_time(rid: str) -> int:
        # Confirmation arrives with the hold already gone: refused; a cancel wins or loses the race.
        return (await api.post(f"/redemptions/{rid}/confirm")).status_code

    async def cancel(rid: str) -> int:
        return (await api.post(f"/redemptions/{rid}/cancel")).status_code

    expired_lists, cancelled, confirmed, fresh = await asyncio.gather(
        asyncio.gather(jobs.expire_reservations(runtime.uow), jobs.expire_reservations(runtime.uow)),
        asyncio.gather(*(cancel(rid) for rid in reservations[::2])),
        asyncio.gather(*(confirm_as_if_in_time(rid) for rid in reservations[1::2])),
        # New redemptions by the same members at the same time.
        asyncio.gather(
            *(
                api.post(
                    f"/programs/{PROGRAM}/members/{m}/redemptions",
                    json={"reward_id": prize["id"], "confirm": True},
                )
                for m in members
            )
        ),
    )
    expired_by_jobs = [rid for expired in expired_lists for rid in expired]
    assert len(expired_by_jobs) == len(set(expired_by_jobs))  # two workers never expire one twice
    assert all(code in (200, 409) for code in cancelled), cancelled  # cancelled, or the job was first
    assert confirmed == [409] * len(confirmed)  # the hold is gone: redemption.expired
    assert all(r.status_code == 201 for r in fresh), [r.text for r in fresh]
    await jobs.expire_reservations(runtime.uow)  # whatever is left

    async with runtime.sessions() as session:
        rows = list(await session.scalars(select(Redemption).where(Redemption.id.in_(reservations))))
    assert Counter(r.status for r in rows).keys() <= {"cancelled", "expired"}
    assert len(rows) == 20
    for member_id in members:
        state = (await api.get(f"/programs/{PROGRAM}/members/{member_id}")).json()["balances"]
        assert (state["available"], state["reserved"]) == (50, 0)
    state = (await api.get(f"/programs/{PROGRAM}/rewards/{prize['id']}")).json()
    assert (state["stock"], state["reserved"]) == (95, 0)
    report = await books(runtime)
    assert report.ok, report
