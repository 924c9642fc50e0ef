"""The figures of loyalty's reports, read from the ledger and the members (definitions on each).

Program and partner accounts keep no cached balance: their figures are sums of their entries, taken
over the program's transactions (`ledger_transactions.program_id`), so a partner's issuer account
counts in the programs it issued for. Member accounts' cached balances are the member figures
(`crm loyalty check` proves them equal to their entries). Months are calendar months in the
program's time zone.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import and_, case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.loyalty.models import Account, LedgerEntry, LedgerTransaction, Lot, Member, Program
from services.loyalty.reports.schemas import (
    ActiveMembersReport,
    ExpiringReport,
    ExpiringWindow,
    FlowFigures,
    FlowMonth,
    IssuanceReport,
    LiabilityFigures,
    LiabilityReport,
    PenetrationMonth,
    PenetrationReport,
    ProgramLiability,
)
from services.loyalty.tables import KnownCustomer
from shared.errors import InvalidInput

COUNTED_STATUSES = ("active", "suspended")  # closed, merged and erased memberships are not members
NOT_ACTIVITY = ("adjust", "reversal")  # staff corrections are not the member's own activity
MAX_MONTHS = 36


def _percent(part: int, whole: int) -> float | None:
    return round(100.0 * part / whole, 2) if whole else None


# --- months in a time zone ---------------------------------------------------------------------------


def month_floor(moment: datetime, timezone: str) -> datetime:
    local = moment.astimezone(ZoneInfo(timezone))
    return local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def next_month(start: datetime) -> datetime:
    """The first instant of the month after `start` (a local month start), in the same zone."""
    return start.replace(year=start.year + start.month // 12, month=start.month % 12 + 1)


def month_starts(since: datetime, until: datetime, timezone: str) -> list[datetime]:
    """Local month starts of every month touching [since, until), oldest first."""
    starts = []
    current = month_floor(since, timezone)
    while current.astimezone(UTC) < until:
        starts.append(current)
        current = next_month(current)
    return starts


def resolve_months(
    since: datetime | None, until: datetime | None, timezone: str, *, now: datetime, default_months: int = 12
) -> tuple[datetime, datetime]:
    """The range asked for, by default the last `default_months` calendar months up to the end of the
    current one; both ends timezone-aware, since before until, at most MAX_MONTHS months."""
    for name, moment in (("since", since), ("until", until)):
        if moment is not None and moment.tzinfo is None:
            raise InvalidInput(f"query.{name}", "give a time zone (e.g. Z or +01:00)")
    end = until.astimezone(UTC) if until else next_month(month_floor(now, timezone)).astimezone(UTC)
    if since is not None:
        start = since.astimezone(UTC)
    else:
        start_local = month_floor(end - timedelta(microseconds=1), timezone)
        for _ in range(default_months - 1):
            start_local = month_floor(start_local - timedelta(days=1), timezone)
        start = start_local.astimezone(UTC)
    if start >= end:
        raise InvalidInput(
            "query.since" if since is not None else "query.until", "since must be before until"
        )
    if len(month_starts(start, end, timezone)) > MAX_MONTHS:
        raise InvalidInput("query.since", f"a report covers at most {MAX_MONTHS} months: narrow since/until")
    return start, end


# --- outstanding liability ---------------------------------------------------------------------------


def _liability(
    members: int, member_sums: dict[str, int], issuer_sums: dict[str, int]
) -> dict[str, int | bool]:
    available = member_sums.get("available", 0)
    pending = member_sums.get("pending", 0)
    reserved = member_sums.get("reserved", 0)
    outstanding = available + pending + reserved
    issued = -issuer_sums.get("issued", 0)
    redeemed = issuer_sums.get("redeemed", 0)
    expired = issuer_sums.get("expired", 0)
    other = sum(
        v for k, v in issuer_sums.items() if k not in ("issued", "redeemed", "expired", "qualifying_issued")
    )
    return {
        "members": members,
        "available": available,
        "pending": pending,
        "reserved": reserved,
        "outstanding": outstanding,
        "issued": issued,
        "redeemed": redeemed,
        "expired": expired,
        "other": other,
        "balanced": issued == outstanding + redeemed + expired + other,
    }


async def liability(session: AsyncSession, *, program_id: str | None = None) -> LiabilityReport:
    """Per program: what members hold (available + pending + reserved: the points owed) beside what
    was issued, redeemed and expired — every point issued is still held, was redeemed, expired or
    written off, so `issued = outstanding + redeemed + expired + other`."""
    as_of = datetime.now(UTC)
    statement = select(Program).order_by(Program.id)
    if program_id is not None:
        statement = statement.where(Program.id == program_id)
    program_rows = (await session.scalars(statement)).all()
    ids = [p.id for p in program_rows]
    member_rows = (
        await session.execute(
            select(Account.program_id, Account.kind, func.sum(Account.balance), func.count())
            .where(Account.owner_kind == "member", Account.program_id.in_(ids))
            .group_by(Account.program_id, Account.kind)
        )
    ).all()
    member_sums: dict[str, dict[str, int]] = defaultdict(dict)
    members: dict[str, int] = defaultdict(int)
    for pid, kind, total, count in member_rows:
        if pid is None:
            continue
        member_sums[pid][kind] = int(total or 0)
        if kind == "available":
            members[pid] = int(count)
    issuer_rows = (
        await session.execute(
            select(LedgerTransaction.program_id, Account.kind, func.sum(LedgerEntry.amount))
            .join(LedgerEntry, LedgerEntry.transaction_id == LedgerTransaction.id)
            .join(Account, Account.id == LedgerEntry.account_id)
            .where(Account.owner_kind != "member", LedgerTransaction.program_id.in_(ids))
            .group_by(LedgerTransaction.program_id, Account.kind)
        )
    ).all()
    issuer_sums: dict[str, dict[str, int]] = defaultdict(dict)
    for pid, kind, total in issuer_rows:
        if pid is None:
            continue
        issuer_sums[pid][kind] = int(total or 0)
    out = [
        ProgramLiability(
            program_id=p.id,
            name=p.name,
            **_liability(members[p.id], member_sums[p.id], issuer_sums[p.id]),  # type: ignore[arg-type]
        )
        for p in program_rows
    ]
    keys = (
        "members",
        "available",
        "pending",
        "reserved",
        "outstanding",
        "issued",
        "redeemed",
        "expired",
        "other",
    )
    totals: dict[str, int | bool] = {k: sum(int(getattr(p, k)) for p in out) for k in keys}
    totals["balanced"] = all(p.balanced for p in out)
    return LiabilityReport(as_of=as_of, programs=out, total=LiabilityFigures(**totals))  # type: ignore[arg-type]


# --- points expiring ---------------------------------------------------------------------------------


async def expiring(
    session: AsyncSession, program: Program, *, as_of: datetime, windows: list[int]
) -> ExpiringReport:
    """Available points that will expire within each window after `as_of` if nothing is spent: lots
    whose expiry date falls in it, or — under the inactivity policy — all the available points of
    members whose inactivity period ends in it (if they stay inactive)."""
    out: list[ExpiringWindow] = []
    previous = 0
    for days in sorted(set(windows)):
        until = as_of + timedelta(days=days)
        base = and_(Lot.program_id == program.id, Lot.status == "available", Lot.remaining > 0)
        if program.expiry_policy == "inactivity" and program.expiry_period:
            period = timedelta(days=program.expiry_period)
            statement = (
                select(func.coalesce(func.sum(Lot.remaining), 0), func.count(func.distinct(Lot.member_id)))
                .join(Member, Member.id == Lot.member_id)
                .where(
                    base, Member.last_activity_at > as_of - period, Member.last_activity_at <= until - period
                )
            )
        else:
            statement = select(
                func.coalesce(func.sum(Lot.remaining), 0), func.count(func.distinct(Lot.member_id))
            ).where(base, Lot.expires_at > as_of, Lot.expires_at <= until)
        points, count = (await session.execute(statement)).one()
        out.append(
            ExpiringWindow(
                days=days,
                until=until,
                points=int(points or 0),
                members=int(count or 0),
                points_since_previous=int(points or 0) - previous,
            )
        )
        previous = int(points or 0)
    return ExpiringReport(
        program_id=program.id,
        expiry_policy=program.expiry_policy,
        timezone=program.timezone,
        as_of=as_of,
        windows=out,
    )


# --- issue vs redemption -----------------------------------------------------------------------------


async def issuance(
    session: AsyncSession, program: Program, *, since: datetime, until: datetime
) -> IssuanceReport:
    """Per month: points issued (credited by the program's or partners' issuer accounts), clawed back
    (returned to them), redeemed and expired — from the entries on those accounts."""
    starts = month_starts(since, until, program.timezone)
    rows = await session.execute(
        select(
            LedgerTransaction.created_at,
            Account.kind,
            func.sum(case((LedgerEntry.amount < 0, LedgerEntry.amount), else_=0)),
            func.sum(case((LedgerEntry.amount > 0, LedgerEntry.amount), else_=0)),
        )
        .join(LedgerEntry, LedgerEntry.transaction_id == LedgerTransaction.id)
        .join(Account, Account.id == LedgerEntry.account_id)
        .where(
            LedgerTransaction.program_id == program.id,
            LedgerTransaction.created_at >= since,
            LedgerTransaction.created_at < until,
            Account.owner_kind != "member",
            Account.kind.in_(("issued", "redeemed", "expired")),
        )
        .group_by(LedgerTransaction.created_at, Account.kind)
    )
    buckets: dict[date, dict[str, int]] = {s.date(): defaultdict(int) for s in starts}
    for created_at, kind, negative, positive in rows:
        month = month_floor(created_at, program.timezone).date()
        figures = buckets.setdefault(month, defaultdict(int))
        if kind == "issued":
            figures["issued"] += -int(negative or 0)
            figures["clawed_back"] += int(positive or 0)
        else:
            figures[kind] += int(negative or 0) + int(positive or 0)

    def flow(f: dict[str, int]) -> dict[str, int]:
        return {
            "issued": f["issued"],
            "clawed_back": f["clawed_back"],
            "net_issued": f["issued"] - f["clawed_back"],
            "redeemed": f["redeemed"],
            "expired": f["expired"],
        }

    months = [FlowMonth(month=m, **flow(buckets[m])) for m in sorted(buckets)]
    total: dict[str, int] = defaultdict(int)
    for m in months:
        for key in ("issued", "clawed_back", "redeemed", "expired"):
            total[key] += getattr(m, key)
    return IssuanceReport(
        program_id=program.id,
        timezone=program.timezone,
        since=since,
        until=until,
        total=FlowFigures(**flow(total)),
        months=months,
    )


# --- penetration -------------------------------------------------------------------------------------


def _counted_customers() -> object:
    # Registered only: earning also creates rows (as locks, see known_customers.resolve).
    return and_(
        KnownCustomer.registered_at.is_not(None),
        KnownCustomer.erased_at.is_(None),
        KnownCustomer.merged_into.is_(None),
    )


async def penetration(
    session: AsyncSession, program: Program, *, since: datetime, until: datetime
) -> PenetrationReport:
    """Members of the program over customers loyalty knows of (registered, not erased, not merged
    away), now and at the end of each month of the range (counting today's customers and members by
    when they registered and enrolled)."""
    counted = _counted_customers()
    known = select(KnownCustomer.customer_id).where(counted)  # type: ignore[arg-type]
    member_base = and_(Member.program_id == program.id, Member.status.in_(COUNTED_STATUSES))

    async def customers_by(moment: datetime | None) -> int:
        statement = select(func.count()).select_from(KnownCustomer).where(counted)  # type: ignore[arg-type]
        if moment is not None:
            statement = statement.where(KnownCustomer.registered_at < moment)
        return int(await session.scalar(statement) or 0)

    async def members_by(moment: datetime | None, *, known_only: bool = True) -> int:
        statement = select(func.count()).select_from(Member).where(member_base)
        statement = statement.where(
            Member.customer_id.in_(known) if known_only else Member.customer_id.not_in(known)
        )
        if moment is not None:
            statement = statement.where(Member.enrolled_at < moment)
        return int(await session.scalar(statement) or 0)

    customers = await customers_by(None)
    members = await members_by(None)
    unknown = await members_by(None, known_only=False)
    months: list[PenetrationMonth] = []
    starts = month_starts(since, until, program.timezone)
    before_c = await customers_by(starts[0].astimezone(UTC)) if starts else 0
    before_m = await members_by(starts[0].astimezone(UTC)) if starts else 0
    for start in starts:
        end = next_month(start).astimezone(UTC)
        c, m = await customers_by(end), await members_by(end)
        months.append(
            PenetrationMonth(
                month=start.date(),
                customers_registered=c - before_c,
                members_enrolled=m - before_m,
                customers=c,
                members=m,
                penetration=_percent(m, c),
            )
        )
        before_c, before_m = c, m
    return PenetrationReport(
        program_id=program.id,
        as_of=datetime.now(UTC),
        customers=customers,
        members=members,
        members_unknown_customer=unknown,
        penetration=_percent(members, customers),
        months=months,
    )


# --- active members ----------------------------------------------------------------------------------


async def active_members(
    session: AsyncSession, program: Program, *, as_of: datetime, days: int
) -> ActiveMembersReport:
    """Members who earned (points credited by an issuer account) or redeemed (points debited to a
    redeemed account) in the `days` before `as_of`. Staff adjustments and reversals do not count."""
    since = as_of - timedelta(days=days)
    members = int(
        await session.scalar(
            select(func.count())
            .select_from(Member)
            .where(
                Member.program_id == program.id,
                Member.status.in_(COUNTED_STATUSES),
                Member.enrolled_at <= as_of,
            )
        )
        or 0
    )
    rows = (
        await session.execute(
            select(LedgerTransaction.member_id, Account.kind)
            .join(LedgerEntry, LedgerEntry.transaction_id == LedgerTransaction.id)
            .join(Account, Account.id == LedgerEntry.account_id)
            .join(Member, Member.id == LedgerTransaction.member_id)
            .where(
                LedgerTransaction.program_id == program.id,
                LedgerTransaction.created_at > since,
                LedgerTransaction.created_at <= as_of,
                LedgerTransaction.kind.not_in(NOT_ACTIVITY),
                Member.status.in_(COUNTED_STATUSES),
                Account.owner_kind != "member",
                ((Account.kind == "issued") & (LedgerEntry.amount < 0))
                | ((Account.kind == "redeemed") & (LedgerEntry.amount > 0)),
            )
            .distinct()
        )
    ).all()
    earned = {m for m, kind in rows if kind == "issued"}
    redeemed = {m for m, kind in rows if kind == "redeemed"}
    active = earned | redeemed
    return ActiveMembersReport(
        program_id=program.id,
        as_of=as_of,
        days=days,
        since=since,
        members=members,
        active=len(active),
        earned=len(earned),
        redeemed=len(redeemed),
        earned_and_redeemed=len(earned & redeemed),
        inactive=max(members - len(active), 0),
        active_share=_percent(len(active), members),
    )
