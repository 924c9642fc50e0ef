"""The points ledger under load (PostgreSQL): many accounts, one hot account, redemptions.

On a fresh database with loyalty's schema, `--members` members (10,000) of one program:

* spread load: `--clients` (64) concurrent clients post for `--seconds`: each posting is one ledger
  transaction (earn, or a spend of what the member has — the spend refused for lack of points does not
  count), through the service's own ledger code — the group commit (`services.loyalty.group_commit`:
  member read, guarded balance update, transaction, entries, lots, lot movements and the posting's
  `points_earned` / `points_redeemed` event, the postings that queued up meanwhile committed together,
  each caller answered after the commit) — postings/s; and, for comparison, the same clients with one
  database transaction per posting (ORM session, member read, one `loyalty_post` call, commit);
* one hot account: the same clients all spend 1 point at a time from one member holding `--hot`
  points until it is empty (group commit) — postings/s, and proof that exactly `--hot` spends
  succeeded and the balance never went below zero;
* redemption: reserve then confirm (two transactions, as the API does them), one after the other —
  median / p95 / p99;
* zero drift: `crm loyalty check`'s proof over every account afterwards.

Baseline, same database, same run, same clients: plain single-row `UPDATE … SET balance = balance + 1`
statements (autocommit) on a 10,000-row table, and on one hot row.

    python -m bench.loyalty.ledger --postgres postgresql+asyncpg://crm:crm@127.0.0.1:55432/postgres
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy import select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bench.identity.databases import fresh_databases
from services.loyalty import ledger, programs
from services.loyalty.app import MIGRATIONS
from services.loyalty.domain import InsufficientPoints
from services.loyalty.group_commit import GroupCommit
from services.loyalty.models import MESSAGING, LedgerTransaction, Member, Program
from shared.db import create_engine, insert_rows
from shared.migrations import upgrade
from shared.uow import UnitOfWorkFactory

PROGRAM = {
    "id": "bench",
    "name": "Bench",
    "timezone": "UTC",
    "points_per_unit": 1,
    "pending_days": 0,
    "expiry_policy": "after_days",
    "expiry_period": 365,
    "negative_policy": "never",
    "negative_limit": 0,
    "tiers": [],
    "settings": {},
}


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def setup(sessions: async_sessionmaker[AsyncSession], members: int) -> list[str]:
    """The program and `members` members with their accounts, inserted in bulk."""
    now = datetime.now(UTC)
    ids = [str(uuid.uuid4()) for _ in range(members + 1)]
    async with sessions() as session:
        await programs.create_program(session, dict(PROGRAM))
        await insert_rows(
            session,
            Member.__table__,  # type: ignore[arg-type]
            [
                {
                    "id": member_id,
                    "program_id": "bench",
                    "customer_id": member_id,
                    "card_number": f"{i:016d}",
                    "card_status": "active",
                    "status": "active",
                    "tier": None,
                    "tier_since": None,
                    "referral_code": f"R{i:09d}",
                    "referred_by": None,
                    "household_id": None,
                    "enrolled_at": now,
                    "last_activity_at": now,
                    "version": 1,
                }
                for i, member_id in enumerate(ids)
            ],
        )
        for member_id in ids:
            await ledger.open_accounts(session, "member", member_id, ledger.MEMBER_KINDS, "bench")
        await session.commit()
    return ids


_programs: dict[str, Program] = {}


async def program_and_member(session: AsyncSession, member_id: str) -> tuple[Program, Member]:
    """The member row, read each time (as the service does), and its program: cached per process,
    checked against the program's current `version` in the same query (re-read when it changed)."""
    member, version = (
        await session.execute(
            select(Member, Program.version)
            .join(Program, Program.id == Member.program_id)
            .where(Member.id == member_id)
        )
    ).one()
    program = _programs.get(member.program_id)
    if program is None or program.version != version:
        program = await session.get(Program, member.program_id, populate_existing=True)
        assert program is not None
        session.expunge(program)
        _programs[program.id] = program
    return program, member


async def post_one(
    sessions: async_sessionmaker[AsyncSession], member_id: str, kind: str, points: int
) -> bool:
    async with sessions() as session:
        program, member = await program_and_member(session, member_id)
        try:
            if kind == "earn":
                await ledger.earn(session, program, member, points, reference=f"e:{uuid.uuid4()}")
            else:
                await ledger.spend(session, program, member, points, reference=f"s:{uuid.uuid4()}")
        except InsufficientPoints:
            await session.rollback()
            return False
        await session.commit()
        return True


async def spread(
    sessions: async_sessionmaker[AsyncSession],
    ids: list[str],
    clients: int,
    seconds: float,
    group: GroupCommit | None = None,
) -> dict[str, Any]:
    """Random earns (60 %) and spends over `ids` from `clients` clients for `seconds`: through the group
    commit if given, else one transaction per posting."""
    rng = random.Random(7)
    done = refused = 0
    deadline = time.perf_counter() + seconds
    program = await _program(sessions) if group is not None else None

    async def one(member_id: str, kind: str, points: int) -> bool:
        if group is None:
            return await post_one(sessions, member_id, kind, points)
        assert program is not None
        try:
            if kind == "earn":
                await group.earn(program, member_id, points, reference=f"e:{uuid.uuid4()}")
            else:
                await group.spend(program, member_id, points, reference=f"s:{uuid.uuid4()}")
        except InsufficientPoints:
            return False
        return True

    async def client() -> None:
        nonlocal done, refused
        while time.perf_counter() < deadline:
            member_id = rng.choice(ids)
            kind = "earn" if rng.random() < 0.6 else "spend"
            ok = await one(member_id, kind, rng.randint(1, 200))
            done += ok
            refused += not ok

    batches = group.batches if group is not None else 0
    start = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    elapsed = time.perf_counter() - start
    figures: dict[str, Any] = {
        "postings": done,
        "refused": refused,
        "seconds": round(elapsed, 2),
        "per_s": round(done / elapsed, 1),
    }
    if group is not None:
        figures["commits"] = group.batches - batches
        figures["postings_per_commit"] = round((done + refused) / max(1, figures["commits"]), 1)
    return figures


async def _program(sessions: async_sessionmaker[AsyncSession]) -> Program:
    async with sessions() as session:
        program = await session.get(Program, "bench")
        assert program is not None
        return program


async def hot(
    sessions: async_sessionmaker[AsyncSession], group: GroupCommit, member_id: str, points: int, clients: int
) -> dict[str, Any]:
    program = await _program(sessions)
    await group.earn(program, member_id, points, reference="hot:seed")
    succeeded = refused = 0
    empty = asyncio.Event()

    async def client() -> None:
        nonlocal succeeded, refused
        while not empty.is_set():
            try:
                await group.spend(program, member_id, 1, reference=f"hot:{uuid.uuid4()}")
                succeeded += 1
            except InsufficientPoints:
                refused += 1
                empty.set()

    start = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    elapsed = time.perf_counter() - start
    async with sessions() as session:
        balance = (await ledger.balances(session, member_id))["available"]
    return {
        "points": points,
        "spends_succeeded": succeeded,
        "refused_when_empty": refused,
        "final_balance": balance,
        "no_double_spend": succeeded == points and balance == 0,
        "seconds": round(elapsed, 2),
        "per_s": round(succeeded / elapsed, 1),
    }


async def redemptions(
    sessions: async_sessionmaker[AsyncSession], ids: list[str], count: int
) -> dict[str, Any]:
    timings: list[float] = []
    for member_id in ids[:count]:
        assert await post_one(sessions, member_id, "earn", 500)
        start = time.perf_counter()
        async with sessions() as session:
            program, member = await program_and_member(session, member_id)
            reserved = await ledger.reserve(session, program, member, 300, reference=f"r:{uuid.uuid4()}")
            await session.commit()
        async with sessions() as session:
            program, member = await program_and_member(session, member_id)
            reservation = await session.get(LedgerTransaction, reserved.id)
            assert reservation is not None
            await ledger.confirm_reservation(session, program, member, reservation)
            await session.commit()
        timings.append(time.perf_counter() - start)
    return {
        "count": count,
        "median_ms": round(statistics.median(timings) * 1000, 2),
        "p95_ms": round(pct(timings, 0.95), 2),
        "p99_ms": round(pct(timings, 0.99), 2),
    }


async def baseline(url: str, rows: int, clients: int, seconds: float, *, one_row: bool) -> dict[str, Any]:
    u = make_url(url)
    pool = await asyncpg.create_pool(
        host=u.host, port=u.port, user=u.username, password=u.password, database=u.database,
        min_size=clients, max_size=clients,
    )  # fmt: skip
    assert pool is not None
    try:
        await pool.execute("CREATE TABLE IF NOT EXISTS bench_baseline (id int PRIMARY KEY, balance bigint)")
        await pool.execute("TRUNCATE bench_baseline")
        await pool.execute("INSERT INTO bench_baseline SELECT g, 0 FROM generate_series(1, $1) g", rows)
        rng = random.Random(3)
        done = 0
        deadline = time.perf_counter() + seconds

        async def client() -> None:
            nonlocal done
            async with pool.acquire() as conn:
                while time.perf_counter() < deadline:
                    row = 1 if one_row else rng.randint(1, rows)
                    await conn.execute("UPDATE bench_baseline SET balance = balance + 1 WHERE id = $1", row)
                    done += 1

        start = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        elapsed = time.perf_counter() - start
        return {"updates": done, "seconds": round(elapsed, 2), "per_s": round(done / elapsed, 1)}
    finally:
        await pool.close()


async def run(
    url: str, members: int, clients: int, seconds: float, hot_points: int, redeem: int
) -> dict[str, Any]:
    await upgrade(url, MIGRATIONS)
    engine = create_engine(url, pool_size=clients)
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    uows = UnitOfWorkFactory(sessions, MESSAGING, source="/crm/loyalty")
    try:
        t = time.perf_counter()
        ids = await setup(sessions, members)
        print(f"setup: {members} members in {time.perf_counter() - t:.1f} s")
        async with GroupCommit(uows) as group:
            spread_figures = await spread(sessions, ids[1:], clients, seconds, group)
            print("spread, group commit:", spread_figures)
            one_by_one = await spread(sessions, ids[1:], clients, min(seconds, 10))
            print("spread, one transaction per posting:", one_by_one)
            spread_base = await baseline(url, members, clients, seconds, one_row=False)
            print("baseline UPDATE, spread:", spread_base)
            hot_figures = await hot(sessions, group, ids[0], hot_points, clients)
            print("hot account:", hot_figures)
        hot_base = await baseline(url, members, clients, min(seconds, 10), one_row=True)
        print("baseline UPDATE, one row:", hot_base)
        redeem_figures = await redemptions(sessions, ids[1:], redeem)
        print("redemption:", redeem_figures)
        async with sessions() as session:
            report = await ledger.check(session)
    finally:
        await engine.dispose()
    return {
        "members": members,
        "clients": clients,
        "spread": {
            **spread_figures,
            "one_transaction_per_posting_per_s": one_by_one["per_s"],
            "baseline_update_per_s": spread_base["per_s"],
            "ratio_to_baseline": round(spread_figures["per_s"] / spread_base["per_s"], 3),
            "target_per_s": 3000,
        },
        "hot_account": {
            **hot_figures,
            "baseline_update_per_s": hot_base["per_s"],
            "ratio_to_baseline": round(hot_figures["per_s"] / hot_base["per_s"], 3),
            "target_per_s": 300,
        },
        "redemption": {**redeem_figures, "target_p99_ms": 30},
        "books": {
            "ok": report.ok,
            "accounts": report.accounts,
            "transactions": report.transactions,
            "drifted_accounts": len(report.drifted_accounts),
            "unbalanced_transactions": len(report.unbalanced_transactions),
            "lot_mismatches": len(report.lot_mismatches),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--postgres", default="postgresql+asyncpg://crm:crm@127.0.0.1:55432/postgres")
    parser.add_argument("--members", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument(
        "--hot", type=int, default=3_000, help="points on the hot account (spent 1 at a time)"
    )
    parser.add_argument("--redemptions", type=int, default=500)
    parser.add_argument("--out", type=Path, default=Path("bench/out"))
    args = parser.parse_args()
    with fresh_databases(args.postgres, 1) as (url,):
        assert url is not None
        figures = asyncio.run(run(url, args.members, args.clients, args.seconds, args.hot, args.redemptions))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "loyalty_ledger.json").write_text(json.dumps(figures, indent=2))
    print(json.dumps(figures, indent=2))
    if not figures["books"]["ok"] or not figures["hot_account"]["no_double_spend"]:
        raise SystemExit("the books do not balance, or the hot account was double-spent")


if __name__ == "__main__":
    main()
