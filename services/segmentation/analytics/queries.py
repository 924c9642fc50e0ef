"""The analytics' SQL: every figure is an aggregate computed in the database (GROUP BY, window
functions), never a scan of every customer in Python; results are at most one row per period, cohort,
tier, currency or reason. The same statements run on SQLite and PostgreSQL: timestamps are bucketed by
`period_index` (see `periods`), the only dialect-specific expression.

`customer_value` and `defections` belong to the value package of this service; they are read through
Core `table()` clauses, after checking with the inspector that they exist (with the columns needed),
so analytics work — with a clear explanation instead of those figures — before that package is there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    Boolean,
    ColumnElement,
    Integer,
    String,
    case,
    cast,
    column,
    false,
    func,
    inspect,
    literal_column,
    select,
    table,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute, Session

from services.segmentation.analytics.periods import Interval, Range
from services.segmentation.models import CustomerFeatures, PurchaseFact, RefundFact
from shared.db import UTCDateTime

CUSTOMER_VALUE = table(
    "customer_value",
    column("customer_id", String()),
    column("value_tier", String()),
    column("active", Boolean()),
)
DEFECTIONS = table(
    "defections",
    column("customer_id", String()),
    column("reason", String()),
    column("at", UTCDateTime()),
)
UNCLASSIFIED = "unclassified"

Moment = ColumnElement[datetime] | InstrumentedAttribute[datetime] | Any


def _dialect(session: AsyncSession) -> str:
    return session.bind.dialect.name if session.bind is not None else "sqlite"


def period_index(session: AsyncSession, moment: Moment, interval: Interval) -> ColumnElement[int]:
    """The integer index of the UTC period of a timestamp column (see `periods.index_of`). SQLite holds
    UTC wall-clock text (see `UTCDateTime`); PostgreSQL's timestamptz is read in UTC whatever the
    session's time zone. Constants are SQL literals, not bound parameters, so the expression is the same
    text wherever it appears."""
    if _dialect(session) == "postgresql":
        utc = func.timezone(literal_column("'UTC'"), moment)
        if interval is Interval.MONTH:
            year = cast(func.extract("year", utc), Integer)
            return (
                year * literal_column("12") + cast(func.extract("month", utc), Integer) - literal_column("1")
            )
        day = cast(func.floor(func.extract("epoch", moment) / literal_column("86400")), Integer)
    else:
        if interval is Interval.MONTH:
            year = cast(func.strftime(literal_column("'%Y'"), moment), Integer)
            month = cast(func.strftime(literal_column("'%m'"), moment), Integer)
            return year * literal_column("12") + month - literal_column("1")
        day = cast(func.julianday(func.date(moment)) - literal_column("2440587.5"), Integer)
    if interval is Interval.WEEK:
        return (day + literal_column("3")) // literal_column("7")
    return day


async def _columns(session: AsyncSession, name: str) -> set[str]:
    """The columns of a table of this database (empty when there is no such table)."""

    def read(sync: Session) -> set[str]:
        inspector = inspect(sync.connection())
        if not inspector.has_table(name):
            return set()
        return {c["name"] for c in inspector.get_columns(name)}

    return await session.run_sync(read)


async def has_columns(session: AsyncSession, name: str, wanted: set[str]) -> bool:
    return wanted <= await _columns(session, name)


def _first_purchases() -> Any:
    """Each customer's first purchase ever (per-customer aggregate, kept inside the database)."""
    p = PurchaseFact
    return (
        select(p.customer_id.label("customer_id"), func.min(p.occurred_at).label("first_at"))
        .group_by(p.customer_id)
        .subquery("first_purchases")
    )


# -- cohorts ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CohortCell:
    cohort: int  # month index of the first purchase
    month: int  # month index of the purchases counted
    customers: int


async def cohort_activity(session: AsyncSession, window: Range) -> list[CohortCell]:
    """For the customers whose first purchase fell in [since, until): how many of them bought in each
    month (by month of first purchase and month of purchase)."""
    p, first = PurchaseFact, _first_purchases()
    inner = (
        select(
            p.customer_id.label("customer_id"),
            period_index(session, first.c.first_at, Interval.MONTH).label("cohort"),
            period_index(session, p.occurred_at, Interval.MONTH).label("month"),
        )
        .join(first, first.c.customer_id == p.customer_id)
        .where(first.c.first_at >= window.since, first.c.first_at < window.until)
        .subquery()
    )
    statement = select(
        inner.c.cohort, inner.c.month, func.count(func.distinct(inner.c.customer_id))
    ).group_by(inner.c.cohort, inner.c.month)
    return [CohortCell(int(c), int(m), int(n)) for c, m, n in await session.execute(statement)]


# -- retention, repeat share, churn -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PeriodBuyers:
    index: int
    buyers: int  # distinct customers who bought in the period
    retained: int  # of them, those who had also bought in the period just before


async def buyers_per_period(session: AsyncSession, interval: Interval, window: Range) -> list[PeriodBuyers]:
    """Per period of [since, until): buyers, and how many of them bought in the previous period too
    (`lag` over each customer's distinct purchase periods)."""
    p = PurchaseFact
    index = period_index(session, p.occurred_at, interval)
    bought = (
        select(p.customer_id.label("customer_id"), index.label("idx"))
        .where(p.occurred_at >= window.since, p.occurred_at < window.until)
        .distinct()
        .subquery("bought")
    )
    previous = func.lag(bought.c.idx).over(partition_by=bought.c.customer_id, order_by=bought.c.idx)
    lagged = select(bought.c.idx.label("idx"), previous.label("prev")).subquery("lagged")
    retained = func.sum(case((lagged.c.prev == lagged.c.idx - literal_column("1"), 1), else_=0))
    statement = select(lagged.c.idx, func.count(), retained).group_by(lagged.c.idx)
    return [PeriodBuyers(int(i), int(n), int(r or 0)) for i, n, r in await session.execute(statement)]


@dataclass(frozen=True, slots=True)
class Share:
    part: int
    whole: int


async def repeat_customers(session: AsyncSession, window: Range) -> Share:
    """Customers with at least two purchases in [since, until) / customers with at least one."""
    p = PurchaseFact
    per_customer = (
        select(func.count().label("n"))
        .where(p.occurred_at >= window.since, p.occurred_at < window.until)
        .group_by(p.customer_id)
        .subquery()
    )
    statement = select(func.count(), func.sum(case((per_customer.c.n >= 2, 1), else_=0)))
    whole, part = (await session.execute(statement)).one()
    return Share(int(part or 0), int(whole or 0))


async def lapsed_customers(session: AsyncSession, as_of: datetime, lapse_days: int) -> Share:
    """Customers whose last purchase before `as_of` is more than `lapse_days` older than it / customers
    with a purchase before `as_of`."""
    p = PurchaseFact
    last = (
        select(func.max(p.occurred_at).label("last_at"))
        .where(p.occurred_at < as_of)
        .group_by(p.customer_id)
        .subquery()
    )
    cutoff = as_of - timedelta(days=lapse_days)
    lapsed = func.sum(case((last.c.last_at < cutoff, 1), else_=0))
    statement = select(func.count(), lapsed)
    whole, part = (await session.execute(statement)).one()
    return Share(int(part or 0), int(whole or 0))


async def inactive_customers(session: AsyncSession) -> Share | None:
    """From `customer_value.active` (the value package's verdict), among customers with a purchase:
    inactive / all. None when that table (or its `active` column) is not there, or has no such row."""
    if not await has_columns(session, "customer_value", {"customer_id", "active"}):
        return None
    cv, f = CUSTOMER_VALUE, CustomerFeatures
    inactive = func.sum(case((cv.c.active == false(), 1), else_=0))
    statement = (
        select(func.count(), inactive)
        .select_from(cv.join(f, f.customer_id == cv.c.customer_id))
        .where(f.purchase_count >= 1, f.erased == false())
    )
    whole, part = (await session.execute(statement)).one()
    return Share(int(part or 0), int(whole)) if whole else None


# -- new vs loyal -----------------------------------------------------------------------------------


@dataclass(slots=True)
class MixFigures:
    customers: int = 0
    purchases: int = 0
    revenue: dict[str, int] = field(default_factory=dict)  # currency -> minor units


@dataclass(frozen=True, slots=True)
class MixCell:
    index: int
    new: bool  # the customer's first purchase ever is in this period
    customers: int


@dataclass(frozen=True, slots=True)
class MixRevenue:
    index: int
    new: bool
    currency: str
    purchases: int
    total_minor: int


async def new_vs_returning(
    session: AsyncSession, interval: Interval, window: Range
) -> tuple[list[MixCell], list[MixRevenue]]:
    """Per period: customers, purchases and revenue (per currency) of first-time buyers (first purchase
    ever in that period) and of returning ones."""
    p, first = PurchaseFact, _first_purchases()
    index = period_index(session, p.occurred_at, interval)
    is_new = case((period_index(session, first.c.first_at, interval) == index, 1), else_=0)
    inner = (
        select(
            p.customer_id.label("customer_id"),
            p.currency.label("currency"),
            p.total_minor.label("total_minor"),
            index.label("idx"),
            is_new.label("new"),
        )
        .join(first, first.c.customer_id == p.customer_id)
        .where(p.occurred_at >= window.since, p.occurred_at < window.until)
        .subquery("mix")
    )
    customers = select(inner.c.idx, inner.c.new, func.count(func.distinct(inner.c.customer_id))).group_by(
        inner.c.idx, inner.c.new
    )
    revenue = select(
        inner.c.idx, inner.c.new, inner.c.currency, func.count(), func.sum(inner.c.total_minor)
    ).group_by(inner.c.idx, inner.c.new, inner.c.currency)
    cells = [MixCell(int(i), bool(n), int(c)) for i, n, c in await session.execute(customers)]
    money = [
        MixRevenue(int(i), bool(n), str(cur), int(k), int(total or 0))
        for i, n, cur, k, total in await session.execute(revenue)
    ]
    return cells, money


# -- revenue by tier --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TierMoney:
    tier: str
    currency: str
    count: int
    total_minor: int


async def revenue_by_tier(
    session: AsyncSession, window: Range
) -> tuple[list[TierMoney], list[TierMoney], dict[str, int]]:
    """Purchases and refunds in [since, until) per `customer_value.value_tier` and currency, and the
    number of distinct buying customers per tier. Customers without a value row count as
    `unclassified`. The caller checks that the table exists first."""
    cv = CUSTOMER_VALUE
    tier = func.coalesce(cv.c.value_tier, literal_column(f"'{UNCLASSIFIED}'"))

    async def money(fact: Any, amount: Any) -> list[TierMoney]:
        inner = (
            select(tier.label("tier"), fact.currency.label("currency"), amount.label("amount"))
            .select_from(fact)
            .outerjoin(cv, cv.c.customer_id == fact.customer_id)
            .where(fact.occurred_at >= window.since, fact.occurred_at < window.until)
            .subquery()
        )
        statement = select(inner.c.tier, inner.c.currency, func.count(), func.sum(inner.c.amount)).group_by(
            inner.c.tier, inner.c.currency
        )
        return [
            TierMoney(str(t), str(c), int(n), int(s or 0)) for t, c, n, s in await session.execute(statement)
        ]

    purchases = await money(PurchaseFact, PurchaseFact.total_minor)
    refunds = await money(RefundFact, RefundFact.amount_minor)
    p = PurchaseFact
    buyers = (
        select(tier.label("tier"), p.customer_id.label("customer_id"))
        .select_from(p)
        .outerjoin(cv, cv.c.customer_id == p.customer_id)
        .where(p.occurred_at >= window.since, p.occurred_at < window.until)
        .subquery()
    )
    counted = select(buyers.c.tier, func.count(func.distinct(buyers.c.customer_id))).group_by(buyers.c.tier)
    customers = {str(t): int(n) for t, n in await session.execute(counted)}
    return purchases, refunds, customers


# -- defections -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReasonCount:
    reason: str
    defections: int
    customers: int


async def defection_reasons(session: AsyncSession, window: Range) -> list[ReasonCount]:
    """Defections recorded in [since, until), per reason. The caller checks that the table exists."""
    d = DEFECTIONS
    statement = (
        select(d.c.reason, func.count(), func.count(func.distinct(d.c.customer_id)))
        .where(d.c.at >= window.since, d.c.at < window.until)
        .group_by(d.c.reason)
    )
    return [ReasonCount(str(r), int(n), int(c)) for r, n, c in await session.execute(statement)]
