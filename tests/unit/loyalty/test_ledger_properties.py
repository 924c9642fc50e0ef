"""Property-based: any sequence of earn / spend / reserve / confirm / cancel / refund / expire / release /
transfer / reverse / adjust leaves the books balanced — every cached balance equals its entries, every
transaction sums to zero, lots hold exactly the available points — and no balance below the program's
negative-balance policy. Runs the real ledger on an in-memory SQLite database."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from services.loyalty import ledger, programs
from services.loyalty.domain import InsufficientPoints, LoyaltyRuleRefused, clawback_due
from services.loyalty.models import Lot, Member, Program, metadata
from shared.errors import Conflict

START = datetime(2026, 1, 30, 22, 0, tzinfo=UTC)
MEMBERS = 3

member_index = st.integers(0, MEMBERS - 1)
points = st.integers(1, 400)
operation = st.one_of(
    st.tuples(st.just("earn"), member_index, points),
    st.tuples(st.just("spend"), member_index, points),
    st.tuples(st.just("reserve"), member_index, points),
    st.tuples(st.just("confirm"), st.integers(0, 20)),
    st.tuples(st.just("cancel"), st.integers(0, 20)),
    st.tuples(st.just("refund"), st.integers(0, 20), st.integers(1, 100)),
    st.tuples(st.just("advance"), st.integers(1, 20)),
    st.tuples(st.just("transfer"), member_index, member_index, points),
    st.tuples(st.just("reverse"), st.integers(0, 40)),
    st.tuples(st.just("adjust"), member_index, st.integers(-300, 300)),
)


@dataclass
class World:
    now: datetime = START
    purchases: list[tuple[str, int, int]] = field(default_factory=list)  # earn tx, member, refunded %
    reservations: list[tuple[str, int]] = field(default_factory=list)
    transactions: list[str] = field(default_factory=list)
    seq: int = 0

    def ref(self, prefix: str) -> str:
        self.seq += 1
        return f"{prefix}:{self.seq}"


async def _setup(session: AsyncSession, negative: bool, pending_days: int) -> tuple[Program, list[Member]]:
    program = await programs.create_program(
        session,
        {
            "id": "p",
            "name": "P",
            "timezone": "Europe/Paris",
            "points_per_unit": 1,
            "pending_days": pending_days,
            "expiry_policy": "end_of_month",
            "expiry_period": 1,
            "negative_policy": "within_limit" if negative else "never",
            "negative_limit": 150 if negative else 0,
            "tiers": [],
            "settings": {},
        },
    )
    members = [(await programs.enrol(session, program, f"c{i}", now=START))[0] for i in range(MEMBERS)]
    await session.commit()
    return program, members


async def _apply(
    session: AsyncSession, program: Program, members: list[Member], world: World, op: tuple
) -> None:  # type: ignore[type-arg]
    kind = op[0]
    now = world.now
    if kind == "earn":
        posted = await ledger.earn(
            session,
            program,
            members[op[1]],
            op[2],
            qualifying=op[2],
            reference=f"buy:{len(world.purchases)}",
            now=now,
        )
        world.purchases.append((posted.id, op[1], 0))
        world.transactions.append(posted.id)
    elif kind == "spend":
        posted = await ledger.spend(
            session, program, members[op[1]], op[2], reference=world.ref("spend"), now=now
        )
        world.transactions.append(posted.id)
    elif kind == "reserve":
        posted = await ledger.reserve(
            session, program, members[op[1]], op[2], reference=world.ref("res"), now=now
        )
        world.reservations.append((posted.id, op[1]))
    elif kind in ("confirm", "cancel") and world.reservations:
        tx_id, m = world.reservations.pop(op[1] % len(world.reservations))
        from services.loyalty.models import LedgerTransaction

        reservation = await session.get(LedgerTransaction, tx_id)
        assert reservation is not None
        if kind == "confirm":
            posted = await ledger.confirm_reservation(session, program, members[m], reservation, now=now)
            world.transactions.append(posted.id)
        else:
            await ledger.cancel_reservation(session, program, members[m], reservation, now=now)
    elif kind == "refund" and world.purchases:
        i = op[1] % len(world.purchases)
        tx_id, m, refunded = world.purchases[i]
        new_refunded = min(100, refunded + op[2])
        from services.loyalty.models import LedgerTransaction

        earned = await session.get(LedgerTransaction, tx_id)
        assert earned is not None
        clawed = sum(
            int(t.details.get("points", 0)) + int(t.details.get("uncollected", 0))
            for t in (
                await session.scalars(
                    select(LedgerTransaction).where(LedgerTransaction.reference.like(f"claw:{tx_id}:%"))
                )
            ).all()
        )
        due = clawback_due(int(earned.details["points"]), 100, new_refunded, clawed)
        lots = list((await session.scalars(select(Lot).where(Lot.transaction_id == tx_id))).all())
        if due:
            await ledger.take_back(
                session, program, members[m], due, source_lots=lots, reference=f"claw:{tx_id}:{new_refunded}",
                kind="clawback", to_account=ledger.program_account(program.id, "issued"), now=now,
            )  # fmt: skip
        world.purchases[i] = (tx_id, m, new_refunded)
    elif kind == "advance":
        world.now = now + timedelta(days=op[1])
        for lot in await ledger.due_pending(session, program, world.now, limit=1000):
            await ledger.release_pending(session, program, lot, now=world.now)
        due_lots = await ledger.due_lots(session, program, world.now, limit=1000)
        by_member: dict[str, list[Lot]] = {}
        for lot in due_lots:
            by_member.setdefault(lot.member_id, []).append(lot)
        for member_id, lots in by_member.items():
            member = next(m for m in members if m.id == member_id)
            await ledger.expire_lots(session, program, member, lots, now=world.now, reason="policy")
    elif kind == "transfer":
        posted = await ledger.transfer(
            session, program, members[op[1]], members[op[2]], op[3], reference=world.ref("tr"), now=now
        )
        world.transactions.append(posted.id)
    elif kind == "reverse" and world.transactions:
        tx_id = world.transactions[op[1] % len(world.transactions)]
        await ledger.reverse(session, program, tx_id, reason="test", actor="hypothesis", now=now)
    elif kind == "adjust" and op[2] != 0:
        posted = await ledger.adjust(
            session,
            program,
            members[op[1]],
            op[2],
            reason="test",
            actor="hypothesis",
            reference=world.ref("adj"),
            now=now,
        )
        world.transactions.append(posted.id)


async def _scenario(ops: list[tuple], negative: bool, pending_days: int) -> None:  # type: ignore[type-arg]
    engine = create_async_engine("sqlite+aiosqlite://")
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    floor = -150 if negative else 0
    try:
        async with sessions() as session:
            program, members = await _setup(session, negative, pending_days)
            world = World()
            for i in range(MEMBERS):  # everyone starts with points, so spending paths run
                await _apply(session, program, members, world, ("earn", i, 300))
            await _apply(session, program, members, world, ("advance", 4))
            await session.commit()
            for op in ops:
                try:
                    await _apply(session, program, members, world, op)
                    await session.commit()
                except (InsufficientPoints, LoyaltyRuleRefused, Conflict):
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
    finally:
        await engine.dispose()


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    ops=st.lists(operation, min_size=3, max_size=40),
    negative=st.booleans(),
    pending_days=st.sampled_from([0, 3]),
)
# Found by this test: reversing an earning whose pending points were released since took them from the
# pending balance (another earning's points), which then went below zero when that one was released.
@example(ops=[("earn", 0, 300), ("reverse", 0), ("advance", 3)], negative=False, pending_days=3)
def test_any_sequence_keeps_the_books_balanced(ops: list[tuple], negative: bool, pending_days: int) -> None:  # type: ignore[type-arg]
    asyncio.run(_scenario(ops, negative, pending_days))
