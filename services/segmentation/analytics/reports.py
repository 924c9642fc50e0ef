"""The analytics figures, assembled from the aggregates of `queries` (see the package docstring)."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from services.segmentation.analytics import queries
from services.segmentation.analytics.periods import Interval, Range, index_of, indexes, midnight, start_of
from services.segmentation.analytics.schemas import (
    Churn,
    ChurnBasis,
    Cohort,
    CohortTable,
    DefectionReport,
    MixPeriod,
    MixReport,
    MixSide,
    ReasonCount,
    RepeatShare,
    RetentionPeriod,
    RetentionReport,
    TierCurrency,
    TierReport,
    TierRevenue,
)

TIERS = ("top", "high", "medium", "rest")


def _ratio(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _month_range(window: Range) -> Range:
    """Whole calendar months: cohorts are months, so a cohort is never cut in two."""
    months = indexes(window, Interval.MONTH)
    return Range(
        midnight(start_of(months[0], Interval.MONTH)), midnight(start_of(months[-1] + 1, Interval.MONTH))
    )


async def cohorts(session: AsyncSession, window: Range, months: int, *, now: datetime) -> CohortTable:
    whole = _month_range(window)
    cells = await queries.cohort_activity(session, whole)
    active: dict[int, dict[int, int]] = defaultdict(dict)
    for cell in cells:
        offset = cell.month - cell.cohort
        if 0 <= offset <= months:
            active[cell.cohort][offset] = cell.customers
    current = index_of(now, Interval.MONTH)
    rows = []
    for month in indexes(whole, Interval.MONTH):
        size = active[month].get(0, 0)
        counts: list[int | None] = [
            active[month].get(k, 0) if month + k <= current else None for k in range(months + 1)
        ]
        rows.append(
            Cohort(
                month=start_of(month, Interval.MONTH),
                customers=size,
                active=counts,
                retention=[None if c is None else _ratio(c, size) for c in counts],
            )
        )
    return CohortTable(since=whole.since, until=whole.until, months=months, cohorts=rows)


async def retention(
    session: AsyncSession, window: Range, interval: Interval, lapse_days: int, *, now: datetime
) -> RetentionReport:
    periods = indexes(window, interval)
    # One more period before the first: the first period's retention needs its buyers.
    scanned = Range(midnight(start_of(periods[0] - 1, interval)), window.until)
    found = {p.index: p for p in await queries.buyers_per_period(session, interval, scanned)}
    rows = []
    for index in periods:
        here, before = found.get(index), found.get(index - 1)
        retained = here.retained if here else 0
        previous = before.buyers if before else 0
        rows.append(
            RetentionPeriod(
                start=start_of(index, interval),
                end=start_of(index + 1, interval),
                buyers=here.buyers if here else 0,
                previous_buyers=previous,
                retained=retained,
                retention_rate=_ratio(retained, previous),
            )
        )
    repeat = await queries.repeat_customers(session, window)
    return RetentionReport(
        since=window.since,
        until=window.until,
        interval=interval,
        periods=rows,
        repeat_customers=RepeatShare(
            customers=repeat.whole, repeat_customers=repeat.part, share=_ratio(repeat.part, repeat.whole)
        ),
        churn=await churn(session, window.until, lapse_days, now=now),
    )


async def churn(session: AsyncSession, until: datetime, lapse_days: int, *, now: datetime) -> Churn:
    """The value model's `active` flag when it can answer (it describes now), else the lapse rule."""
    if until >= now - timedelta(minutes=1):
        share = await queries.inactive_customers(session)
        if share is not None:
            return Churn(
                basis=ChurnBasis.CUSTOMER_VALUE,
                as_of=now,
                lapse_days=lapse_days,
                customers=share.whole,
                churned=share.part,
                rate=_ratio(share.part, share.whole),
            )
    as_of = min(until, now)
    share = await queries.lapsed_customers(session, as_of, lapse_days)
    return Churn(
        basis=ChurnBasis.LAPSE_DAYS,
        as_of=as_of,
        lapse_days=lapse_days,
        customers=share.whole,
        churned=share.part,
        rate=_ratio(share.part, share.whole),
    )


async def new_vs_loyal(session: AsyncSession, window: Range, interval: Interval) -> MixReport:
    cells, money = await queries.new_vs_returning(session, interval, window)
    sides: dict[tuple[int, bool], MixSide] = defaultdict(
        lambda: MixSide(customers=0, purchases=0, revenue={})
    )
    for cell in cells:
        sides[cell.index, cell.new].customers = cell.customers
    for row in money:
        side = sides[row.index, row.new]
        side.purchases += row.purchases
        side.revenue[row.currency] = row.total_minor
    rows = [
        MixPeriod(
            start=start_of(index, interval),
            end=start_of(index + 1, interval),
            new=sides[index, True],
            returning=sides[index, False],
        )
        for index in indexes(window, interval)
    ]
    return MixReport(
        since=window.since,
        until=window.until,
        interval=interval,
        currencies=sorted({m.currency for m in money}),
        periods=rows,
    )


NO_VALUE = (
    "Revenue by tier needs the customer value tables (`customer_value` with `value_tier`), which this "
    "database does not have yet: run the segmentation migrations that create them."
)
NO_DEFECTIONS = (
    "Defection reasons need the `defections` table, which this database does not have yet: run the "
    "segmentation migrations that create it."
)


async def revenue_by_tier(session: AsyncSession, window: Range) -> TierReport:
    if not await queries.has_columns(session, "customer_value", {"customer_id", "value_tier"}):
        return TierReport(
            since=window.since,
            until=window.until,
            available=False,
            explanation=NO_VALUE,
            currencies=[],
            tiers=[],
        )
    purchases, refunds, customers = await queries.revenue_by_tier(session, window)
    money: dict[str, dict[str, TierCurrency]] = defaultdict(dict)

    def entry(tier: str, currency: str) -> TierCurrency:
        return money[tier].setdefault(
            currency,
            TierCurrency(
                currency=currency, purchases=0, purchased_minor=0, refunds=0, refunded_minor=0, net_minor=0
            ),
        )

    for p in purchases:
        e = entry(p.tier, p.currency)
        e.purchases, e.purchased_minor = p.count, p.total_minor
    for r in refunds:
        e = entry(r.tier, r.currency)
        e.refunds, e.refunded_minor = r.count, r.total_minor
    for by_currency in money.values():
        for e in by_currency.values():
            e.net_minor = e.purchased_minor - e.refunded_minor
    extra = sorted(set(money) - set(TIERS))  # `unclassified`, or a tier this code does not know yet
    tiers = [
        TierRevenue(
            tier=tier,
            customers=customers.get(tier, 0),
            by_currency=[money[tier][c] for c in sorted(money[tier])],
        )
        for tier in (*TIERS, *extra)
        if tier in TIERS or tier in money
    ]
    currencies = sorted({c for by_currency in money.values() for c in by_currency})
    return TierReport(
        since=window.since, until=window.until, available=True, currencies=currencies, tiers=tiers
    )


async def defections(session: AsyncSession, window: Range) -> DefectionReport:
    if not await queries.has_columns(session, "defections", {"customer_id", "reason", "at"}):
        return DefectionReport(
            since=window.since,
            until=window.until,
            available=False,
            explanation=NO_DEFECTIONS,
            total=0,
            reasons=[],
        )
    counts = await queries.defection_reasons(session, window)
    total = sum(c.defections for c in counts)
    reasons = [
        ReasonCount(
            reason=c.reason,
            defections=c.defections,
            customers=c.customers,
            share=round(c.defections / total, 4),
        )
        for c in sorted(counts, key=lambda c: (-c.defections, c.reason))
    ]
    return DefectionReport(
        since=window.since, until=window.until, available=True, total=total, reasons=reasons
    )
