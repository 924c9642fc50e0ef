"""Loyalty's scheduled passes: pending points released, points expired, expiring-soon reminders sent.

Each pass is one bounded sweep (at most `limit` lots or reminders) at an instant `now` (injectable,
for tests and back-fills); `register` runs them in a background loop every `CRM_LOYALTY_JOBS_INTERVAL`
seconds (default 300; 0 turns it off), and `crm loyalty expire` runs them once with a progress bar.

Work is read first, then done one member at a time, each member in a transaction of its own: a
failure (a member locked too long, a database hiccup) costs that member's batch only, and the next
pass picks it up again. Inside a member's transaction the member's `available` account row is locked
first — the lock every ledger operation on that member takes first — then the lots are read again
and re-checked, so a pass racing a purchase, a redemption or another replica's pass never expires or
releases anything twice nor touches points that moved meanwhile. All ledger rows are written by
`ledger` functions (`release_pending`, `expire_lots`).
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

from sqlalchemy import and_, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.loyalty import ledger
from services.loyalty.models import Account, Lot, Member, Program
from services.loyalty.tables import ExpiryNotice
from shared.contracts.loyalty import PointsExpired, PointsExpiringSoon
from shared.db import dialect_insert as _insert
from shared.logging import get_logger
from shared.runtime import ServiceRuntime
from shared.uow import UnitOfWork

log = get_logger(__name__)

DEFAULT_INTERVAL = 300.0
DEFAULT_LIMIT = 1000
MAX_ROUNDS = 50  # passes in a row while there is more work, per wake-up of the background loop

UowFactory = Callable[[], UnitOfWork]


class PassProgress(Protocol):
    """Where a pass reports how far it got (a rich progress bar from the CLI; nothing in the service)."""

    def start(self, description: str, total: int) -> None: ...

    def advance(self, count: int = 1) -> None: ...


@dataclass(slots=True)
class PassResult:
    """What a pass did: members touched, lots (or reminders), points, and members that failed."""

    name: str
    members: int = 0
    lots: int = 0
    points: int = 0
    failed: list[str] = field(default_factory=list)
    full: bool = False  # the pass hit its limit: there may be more to do now

    def as_dict(self) -> dict[str, object]:
        return {
            "pass": self.name,
            "members": self.members,
            "lots": self.lots,
            "points": self.points,
            "failed": len(self.failed),
        }


async def _lock_member(session: AsyncSession, member_id: str) -> None:
    """Take the member's lock (their available account row) before reading their lots again."""
    await session.execute(
        select(Account.id).where(Account.id == ledger.member_account(member_id)).with_for_update()
    )


def _group(rows: Iterable[tuple[str, str, int]]) -> dict[tuple[str, str], list[int]]:
    """(program, member, lot) rows → lots per (program, member), in the order read."""
    out: dict[tuple[str, str], list[int]] = defaultdict(list)
    for program_id, member_id, lot_id in rows:
        out[(program_id, member_id)].append(lot_id)
    return out


async def _programs(session: AsyncSession, program_id: str | None) -> list[Program]:
    statement = select(Program).order_by(Program.id)
    if program_id is not None:
        statement = statement.where(Program.id == program_id)
    return list((await session.scalars(statement)).all())


# --- pending release ---------------------------------------------------------------------------------


async def _due_lots(
    uow: UowFactory,
    finder: Callable[..., Awaitable[list[Lot]]],
    *,
    now: datetime,
    limit: int,
    program_id: str | None,
) -> list[tuple[str, str, int]]:
    """(program, member, lot) of at most `limit` lots `finder` says are due, across programs."""
    rows: list[tuple[str, str, int]] = []
    async with uow() as unit:
        for program in await _programs(unit.session, program_id):
            if len(rows) >= limit:
                break
            for lot in await finder(unit.session, program, now, limit=limit - len(rows)):
                rows.append((program.id, lot.member_id, lot.id))
    return rows


async def release_pass(
    uow: UowFactory,
    *,
    now: datetime | None = None,
    limit: int = DEFAULT_LIMIT,
    program_id: str | None = None,
    progress: PassProgress | None = None,
) -> PassResult:
    """Pending points whose hold has passed become spendable (at most `limit` lots, every program)."""
    now = now or datetime.now(UTC)
    result = PassResult("release")
    rows = await _due_lots(uow, ledger.due_pending, now=now, limit=limit, program_id=program_id)
    result.full = len(rows) >= limit
    batches = _group(rows)
    if progress is not None:
        progress.start("Releasing pending points", len(batches))
    for (pid, member_id), lot_ids in batches.items():
        try:
            async with uow() as unit:
                session = unit.session
                await _lock_member(session, member_id)
                found = await session.get(Program, pid)
                assert found is not None
                lots = (
                    await session.scalars(
                        select(Lot)
                        .where(Lot.id.in_(lot_ids), Lot.status == "pending", Lot.available_at <= now)
                        .order_by(Lot.id)
                        .with_for_update()
                    )
                ).all()
                points = 0
                for lot in lots:
                    released = lot.remaining
                    if await ledger.release_pending(session, found, lot, now=now) is not None:
                        points += released
                await unit.commit()
            if lots:
                result.members += 1
                result.lots += len(lots)
                result.points += points
        except Exception:
            log.exception("loyalty_release_failed", member_id=member_id)
            result.failed.append(member_id)
        if progress is not None:
            progress.advance()
    return result


# --- expiry ------------------------------------------------------------------------------------------


def _due(program: Program, member: Member, lot: Lot, now: datetime) -> bool:
    """The lot's points are due to expire at `now` (the same rule as `ledger.due_lots`)."""
    if lot.status != "available" or lot.remaining <= 0:
        return False
    if lot.expires_at is not None and lot.expires_at <= now:
        return True
    if program.expiry_policy == "inactivity" and program.expiry_period:
        return member.last_activity_at <= now - timedelta(days=program.expiry_period)
    return False


async def expiry_pass(
    uow: UowFactory,
    *,
    now: datetime | None = None,
    limit: int = DEFAULT_LIMIT,
    program_id: str | None = None,
    progress: PassProgress | None = None,
) -> PassResult:
    """Expire the points due at `now` under each program's policy (after N days, at the end of the
    month or year in the program's time zone, or after N days of inactivity): one ledger transaction
    and one `points_expired` event per member, each member in a transaction of its own. At most
    `limit` lots per pass."""
    now = now or datetime.now(UTC)
    result = PassResult("expiry")
    rows = await _due_lots(uow, ledger.due_lots, now=now, limit=limit, program_id=program_id)
    result.full = len(rows) >= limit
    batches = _group(rows)
    if progress is not None:
        progress.start("Expiring points", len(batches))
    for (pid, member_id), lot_ids in batches.items():
        try:
            async with uow() as unit:
                session = unit.session
                await _lock_member(session, member_id)
                program_row = await session.get(Program, pid)
                member = await session.get(Member, member_id)
                assert program_row is not None
                assert member is not None
                program = program_row
                lots = [
                    lot
                    for lot in (
                        await session.scalars(
                            select(Lot).where(Lot.id.in_(lot_ids)).order_by(Lot.id).with_for_update()
                        )
                    ).all()
                    if _due(program, member, lot, now)
                ]
                points = sum(lot.remaining for lot in lots)
                posted = await ledger.expire_lots(
                    session, program, member, lots, now=now, reason=f"expiry policy {program.expiry_policy}"
                )
                if posted is not None:
                    balance = posted.balance(member.id)
                    await unit.publish(
                        PointsExpired(
                            customer_id=member.customer_id,
                            program_id=program.id,
                            transaction_id=posted.id,
                            points=points,
                            balance_after=int(balance if balance is not None else 0),
                            occurred_at=now,
                        )
                    )
                await unit.commit()
            if posted is not None:
                result.members += 1
                result.lots += len(lots)
                result.points += points
        except Exception:
            log.exception("loyalty_expiry_failed", member_id=member_id)
            result.failed.append(member_id)
        if progress is not None:
            progress.advance()
    return result


# --- expiring-soon reminders -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Notice:
    program_id: str
    member_id: str
    customer_id: str
    expires_at: datetime
    points: int


async def _notices_due(session: AsyncSession, program: Program, now: datetime, limit: int) -> list[_Notice]:
    """What should be announced for the program: per member and expiry instant within the notice
    window, the available points that will expire then, not announced yet."""
    horizon = now + timedelta(days=program.expiring_notice_days)
    sent = select(ExpiryNotice.member_id).where(
        ExpiryNotice.member_id == Lot.member_id, ExpiryNotice.expires_at == Lot.expires_at
    )
    dated = (
        await session.execute(
            select(Lot.member_id, Member.customer_id, Lot.expires_at, func.sum(Lot.remaining))
            .join(Member, Member.id == Lot.member_id)
            .where(
                Lot.program_id == program.id,
                Lot.status == "available",
                Lot.remaining > 0,
                Lot.expires_at > now,
                Lot.expires_at <= horizon,
                ~sent.exists(),
            )
            .group_by(Lot.member_id, Member.customer_id, Lot.expires_at)
            .order_by(Lot.expires_at, Lot.member_id)
            .limit(limit)
        )
    ).all()
    notices = [
        _Notice(program.id, m, c, e, int(p)) for m, c, e, p in dated if e is not None and int(p or 0) > 0
    ]
    if program.expiry_policy == "inactivity" and program.expiry_period and len(notices) < limit:
        # Everything a member holds expires once they have been inactive for `expiry_period` days.
        period = timedelta(days=program.expiry_period)
        inactive = (
            await session.execute(
                select(Member.id, Member.customer_id, Member.last_activity_at, func.sum(Lot.remaining))
                .join(Lot, and_(Lot.member_id == Member.id, Lot.status == "available", Lot.remaining > 0))
                .where(
                    Member.program_id == program.id,
                    Member.last_activity_at > now - period,
                    Member.last_activity_at <= horizon - period,
                )
                .group_by(Member.id, Member.customer_id, Member.last_activity_at)
                .order_by(Member.last_activity_at, Member.id)
                .limit(limit - len(notices))
            )
        ).all()
        notices += [
            _Notice(program.id, m, c, last + period, int(p)) for m, c, last, p in inactive if int(p or 0) > 0
        ]
    if not notices:
        return []
    # Leave out those already announced (the dated query did in SQL; inactivity instants here).
    announced = set(
        (
            await session.execute(
                select(ExpiryNotice.member_id, ExpiryNotice.expires_at).where(
                    ExpiryNotice.member_id.in_({n.member_id for n in notices})
                )
            )
        ).all()
    )
    return [n for n in notices if (n.member_id, n.expires_at) not in announced]


async def notice_pass(
    uow: UowFactory,
    *,
    now: datetime | None = None,
    limit: int = DEFAULT_LIMIT,
    program_id: str | None = None,
    progress: PassProgress | None = None,
) -> PassResult:
    """One `points_expiring_soon` per member and expiry instant falling within the program's
    `expiring_notice_days`, sent once: the reminder is recorded in `expiry_notices` in the same
    transaction as its event, and a reminder already recorded (by an earlier pass, or another replica
    just now) is not sent again."""
    now = now or datetime.now(UTC)
    result = PassResult("notices")
    due: list[_Notice] = []
    async with uow() as unit:
        for program in await _programs(unit.session, program_id):
            if len(due) >= limit:
                break
            if program.expiry_policy == "never" or program.expiring_notice_days <= 0:
                continue
            due += await _notices_due(unit.session, program, now, limit - len(due))
    result.full = len(due) >= limit
    per_member: dict[str, list[_Notice]] = defaultdict(list)
    for notice in due:
        per_member[notice.member_id].append(notice)
    if progress is not None:
        progress.start("Sending expiry reminders", len(per_member))
    for member_id, notices in per_member.items():
        try:
            sent = 0
            points = 0
            async with uow() as unit:
                session = unit.session
                insert = _insert(session)
                for notice in notices:
                    outcome = await session.execute(
                        insert(ExpiryNotice)  # type: ignore[operator]
                        .values(
                            member_id=notice.member_id,
                            expires_at=notice.expires_at,
                            program_id=notice.program_id,
                            points=notice.points,
                            notified_at=now,
                        )
                        .on_conflict_do_nothing()
                    )
                    if outcome.rowcount:  # type: ignore[attr-defined]
                        await unit.publish(
                            PointsExpiringSoon(
                                customer_id=notice.customer_id,
                                program_id=notice.program_id,
                                points=notice.points,
                                expires_at=notice.expires_at,
                                occurred_at=now,
                            )
                        )
                        sent += 1
                        points += notice.points
                await unit.commit()
            if sent:
                result.members += 1
                result.lots += sent
                result.points += points
        except Exception:
            log.exception("loyalty_notice_failed", member_id=member_id)
            result.failed.append(member_id)
        if progress is not None:
            progress.advance()
    return result


# --- together ----------------------------------------------------------------------------------------


async def run_passes(
    uow: UowFactory,
    *,
    now: datetime | None = None,
    limit: int = DEFAULT_LIMIT,
    program_id: str | None = None,
    progress: PassProgress | None = None,
    rounds: int = MAX_ROUNDS,
    notices: bool = True,
) -> list[PassResult]:
    """Release, then expire, then remind — each repeated while it fills its limit (at most `rounds`
    times). Releasing first lets points whose hold ended expire on time if they are also due."""
    results: list[PassResult] = []
    passes = [release_pass, expiry_pass] + ([notice_pass] if notices else [])
    for one in passes:
        for _ in range(max(rounds, 1)):
            outcome = await one(uow, now=now, limit=limit, program_id=program_id, progress=progress)
            results.append(outcome)
            if not outcome.full:
                break
    return results


def interval(runtime: ServiceRuntime) -> float:
    """`CRM_LOYALTY_JOBS_INTERVAL` (LoyaltySettings.jobs_interval)."""
    return float(getattr(runtime.settings, "jobs_interval", DEFAULT_INTERVAL))


def register(runtime: ServiceRuntime) -> None:
    """Attach the scheduled passes to the service runtime (safe in every replica, see above)."""
    every = interval(runtime)
    if every <= 0:
        return

    async def loyalty_passes() -> None:
        while True:
            await asyncio.sleep(every)
            try:
                results = await run_passes(runtime.uow)
            except Exception:  # the database away: try again next time, never end the loop
                log.exception("loyalty_passes_failed")
                continue
            done = [r.as_dict() for r in results if r.members or r.failed]
            if done:
                log.info("loyalty_passes", results=done)

    runtime.add_background(loyalty_passes)
