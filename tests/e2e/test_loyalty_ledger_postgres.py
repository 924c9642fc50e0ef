"""The ledger on PostgreSQL (one `loyalty_post` call per earn / spend / reserve / confirm) behaves as on
SQLite (the ORM path): the same random operation sequences as the SQLite property test
(tests/unit/loyalty/test_ledger_properties.py) keep the books balanced after every step, refuse the
same operations, and end with the same balances and the same lots, remaining points included."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from services.loyalty import ledger
from services.loyalty.app import MIGRATIONS
from services.loyalty.domain import InsufficientPoints, LoyaltyRuleRefused
from services.loyalty.models import Lot, Member, metadata
from shared.errors import Conflict
from shared.migrations import upgrade
from tests.support.servers import PG_ADMIN_DSN, create_database, drop_database, sqlalchemy_url
from tests.unit.loyalty.test_ledger_properties import MEMBERS, World, _apply, _setup, operation

State = tuple[list[str], dict[str, dict[str, int]], list[tuple[Any, ...]]]


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    """One migrated database for the module (emptied before each example)."""
    name = asyncio.run(create_database("loyalty"))
    url = sqlalchemy_url(PG_ADMIN_DSN, name)
    try:
        asyncio.run(upgrade(url, Path(MIGRATIONS)))
        yield url
    finally:
        asyncio.run(drop_database(name))


async def _state(session: AsyncSession, outcomes: list[str]) -> State:
    members = (await session.scalars(select(Member).order_by(Member.customer_id))).all()
    customer = {m.id: m.customer_id for m in members}
    balances = {m.customer_id: await ledger.balances(session, m.id) for m in members}
    lots = [
        (
            customer[lot.member_id],
            lot.points,
            lot.remaining,
            lot.status,
            lot.earned_at,
            lot.available_at,
            lot.expires_at,
        )
        for lot in (await session.scalars(select(Lot).order_by(Lot.id))).all()
    ]
    return outcomes, balances, lots


async def _run(
    sessions: async_sessionmaker[AsyncSession],
    ops: list[tuple],  # type: ignore[type-arg]
    negative: bool,
    pending_days: int,
    *,
    fast: bool,
) -> State:
    floor = -150 if negative else 0
    outcomes: list[str] = []
    async with sessions() as session:
        assert await ledger._fast(session) is fast
        program, members = await _setup(session, negative, pending_days)
        world = World()
        for i in range(MEMBERS):  # everyone starts with points (not expired: the stream advances time)
            await _apply(session, program, members, world, ("earn", i, 300))
        await session.commit()
        for op in ops:
            try:
                await _apply(session, program, members, world, op)
                await session.commit()
                outcomes.append("ok")
            except (InsufficientPoints, LoyaltyRuleRefused, Conflict) as exc:
                outcomes.append(type(exc).__name__)
                await session.rollback()
                for member in members:
                    await session.refresh(member)
                await session.refresh(program)
            report = await ledger.check(session)
            assert report.ok, (op, report)
            for member in members:
                b = await ledger.balances(session, member.id)
                assert b["available"] >= floor, (op, b)
                assert b["pending"] >= 0, (op, b)
                assert b["reserved"] >= 0, (op, b)
        return await _state(session, outcomes)


async def _on_sqlite(ops: list[tuple], negative: bool, pending_days: int) -> State:  # type: ignore[type-arg]
    engine = create_async_engine("sqlite+aiosqlite://")
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    try:
        return await _run(
            async_sessionmaker(engine, expire_on_commit=False), ops, negative, pending_days, fast=False
        )
    finally:
        await engine.dispose()


async def _on_postgres(url: str, ops: list[tuple], negative: bool, pending_days: int) -> State:  # type: ignore[type-arg]
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            tables = ", ".join(t.name for t in metadata.sorted_tables)
            await conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
        return await _run(
            async_sessionmaker(engine, expire_on_commit=False), ops, negative, pending_days, fast=True
        )
    finally:
        await engine.dispose()


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    ops=st.lists(operation, min_size=3, max_size=40),
    negative=st.booleans(),
    pending_days=st.sampled_from([0, 3]),
)
def test_postgres_ledger_matches_sqlite(
    pg_url: str, ops: list[tuple], negative: bool, pending_days: int
) -> None:  # type: ignore[type-arg]
    expected = asyncio.run(_on_sqlite(ops, negative, pending_days))
    got = asyncio.run(_on_postgres(pg_url, ops, negative, pending_days))
    assert got[0] == expected[0], "the same operations succeed and are refused"
    assert got[1] == expected[1], "the same balances"
    assert got[2] == expected[2], "the same lots, with the same remaining points"


# A run of earns and spends in one transaction, as a consumer's batch does it: the earns held in a
# write-behind buffer (one statement) must leave the same ledger, lots and returned balances as the
# same earns posted one by one — including a spend between them, which posts the held ones first.
_RUN = [
    ("earn", 0, 120),
    ("earn", 1, 40),
    ("earn", 0, 30),
    ("spend", 0, 140),  # needs the two held earns of member 0 (150) before it
    ("earn", 2, 75),
    ("earn", 0, 5),
    ("earn", 1, 60),
]


async def _write_behind_run(url: str, *, behind: bool) -> tuple[list[dict[str, int]], list[bool], State]:
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            tables = ", ".join(t.name for t in metadata.sorted_tables)
            await conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
        async with async_sessionmaker(engine, expire_on_commit=False)() as session:
            program, members = await _setup(session, False, 0)
            await session.commit()
            posted: list[ledger.Posted] = []
            held: list[bool] = []
            at = datetime(2026, 3, 1, 12, tzinfo=UTC)
            async with ledger.write_behind(session) as buffer:
                assert buffer is not None
                for i, (kind, m, points) in enumerate(_RUN):
                    if kind == "earn":
                        p = await ledger.earn(
                            session, program, members[m], points, reference=f"e{i}", now=at, behind=behind
                        )
                    else:
                        p = await ledger.spend(
                            session, program, members[m], points, reference=f"s{i}", now=at
                        )
                    held.append(not p.balances)  # a held credit has its balances only after the flush
                    posted.append(p)
            await session.commit()
            names = {member.id: f"member{j}" for j, member in enumerate(members)}  # ids differ per run
            returned = [
                {f"{names[a.split(':')[1]]}:{a.split(':')[2]}": b for a, b in p.balances.items()}
                for p in posted
            ]
            return returned, held, await _state(session, [])
    finally:
        await engine.dispose()


def test_write_behind_earns_end_as_posted_one_by_one(pg_url: str) -> None:
    one_by_one = asyncio.run(_write_behind_run(pg_url, behind=False))
    held_run = asyncio.run(_write_behind_run(pg_url, behind=True))
    assert one_by_one[1] == [False] * len(_RUN)
    assert held_run[1] == [kind == "earn" for kind, _, _ in _RUN]  # every earn was held
    assert held_run[0] == one_by_one[0]  # the balances each posting returned
    assert held_run[2] == one_by_one[2]  # balances and lots (points, remaining, status, dates)
