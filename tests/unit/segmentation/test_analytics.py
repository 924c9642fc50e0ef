"""Segmentation analytics: every figure checked against numbers worked out by hand on a small fixture.

The fixture (all EUR unless said otherwise; `now` is 2026-06-15 12:00 UTC):

    A  2026-01-10 1000, 2026-02-05 2000, 2026-04-20 500; refund 200 on 2026-02-06     tier top, active
    B  2026-01-25 3000, 2026-01-28 1000 USD; refund 1000 USD on 2026-02-01           tier high, inactive
    C  2026-02-14 4000, 2026-03-01 1000                                               tier rest, inactive
    D  2025-12-31 23:30 700, 2026-02-10 800                                           no value row
    E  2026-03-31 23:59:59 600 (the last second of March)                             no value row
    F  no purchase (a prospect)                                                       tier rest, inactive

Defections: B price (Mar 1), C service (Apr 1), D price twice (Feb 15, Feb 20), A price in 2025-06.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from services.segmentation.analytics import charts, queries, reports
from services.segmentation.analytics.periods import Interval, Range, index_of, resolve_range, start_of
from services.segmentation.analytics.schemas import ChurnBasis
from services.segmentation.models import CustomerFeatures, PurchaseFact, RefundFact, metadata
from services.segmentation.value.models import CustomerValue, Defection
from shared.db import create_engine, session_factory
from shared.errors import InvalidInput

NOW = datetime(2026, 6, 15, 12, tzinfo=UTC)
VALUE_TABLES = {CustomerValue.__tablename__, Defection.__tablename__}


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


PURCHASES = [
    ("p1", "A", "2026-01-10 10:00", "EUR", 1000),
    ("p2", "A", "2026-02-05 10:00", "EUR", 2000),
    ("p3", "A", "2026-04-20 10:00", "EUR", 500),
    ("p4", "B", "2026-01-25 10:00", "EUR", 3000),
    ("p5", "B", "2026-01-28 10:00", "USD", 1000),
    ("p6", "C", "2026-02-14 10:00", "EUR", 4000),
    ("p7", "C", "2026-03-01 10:00", "EUR", 1000),
    ("p8", "D", "2025-12-31 23:30", "EUR", 700),
    ("p9", "D", "2026-02-10 10:00", "EUR", 800),
    ("p10", "E", "2026-03-31 23:59:59", "EUR", 600),
]
REFUNDS = [
    ("r1", "p2", "A", "2026-02-06 10:00", "EUR", 200),
    ("r2", "p5", "B", "2026-02-01 10:00", "USD", 1000),
]
VALUES = [("A", "top", True), ("B", "high", False), ("C", "rest", False), ("F", "rest", False)]
DEFECTIONS = [
    ("B", "price", "2026-03-01 09:00"),
    ("C", "service", "2026-04-01 09:00"),
    ("D", "price", "2026-02-15 09:00"),
    ("D", "price", "2026-02-20 09:00"),
    ("A", "price", "2025-06-01 09:00"),
]


async def seed(engine: AsyncEngine, *, value_tables: bool = True) -> None:
    """The fixture above, in a fresh database (without the value package's tables if asked)."""
    tables = [t for t in metadata.sorted_tables if value_tables or t.name not in VALUE_TABLES]
    async with engine.begin() as conn:
        await conn.run_sync(lambda sync: metadata.create_all(sync, tables=tables))
    async with session_factory(engine)() as session:
        await session.execute(
            insert(PurchaseFact),
            [
                {"purchase_id": i, "customer_id": c, "occurred_at": at(t), "currency": cur, "total_minor": m}
                | {"channel": "store"}
                for i, c, t, cur, m in PURCHASES
            ],
        )
        await session.execute(
            insert(RefundFact),
            [
                {"refund_id": i, "purchase_id": p, "customer_id": c, "occurred_at": at(t), "currency": cur}
                | {"amount_minor": m}
                for i, p, c, t, cur, m in REFUNDS
            ],
        )
        counts = {c: sum(1 for p in PURCHASES if p[1] == c) for c in "ABCDEF"}
        await session.execute(
            insert(CustomerFeatures),
            [
                {"customer_id": c, "purchase_count": n, "erased": False, "updated_at": NOW}
                for c, n in counts.items()
            ],
        )
        if value_tables:
            await session.execute(
                insert(CustomerValue),
                [{"customer_id": c, "value_tier": t, "active": a, "updated_at": NOW} for c, t, a in VALUES],
            )
            await session.execute(
                insert(Defection),
                [{"customer_id": c, "reason": r, "at": at(t), "noted_by": "test"} for c, r, t in DEFECTIONS],
            )
        await session.commit()


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'seg.db'}")
    await seed(engine)
    yield engine
    await engine.dispose()


@pytest.fixture
async def session(engine: AsyncEngine) -> AsyncIterator[AsyncSession]:
    async with session_factory(engine)() as s:
        yield s


@pytest.fixture
async def bare(tmp_path: Path) -> AsyncIterator[AsyncSession]:
    """The same facts in a database without `customer_value` and `defections`."""
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'bare.db'}")
    await seed(engine, value_tables=False)
    async with session_factory(engine)() as s:
        yield s
    await engine.dispose()


JAN_TO_MAY = Range(at("2026-01-01 00:00"), at("2026-05-01 00:00"))


async def test_cohort_table(session: AsyncSession) -> None:
    table = await reports.cohorts(session, Range(at("2026-01-01"), at("2026-04-01")), 3, now=NOW)
    rows = {c.month: (c.customers, c.active, c.retention) for c in table.cohorts}
    # D's first purchase is in December 2025: not in the January cohort.
    # E's, at 23:59:59 on 31 March, is March's.
    assert rows == {
        date(2026, 1, 1): (2, [2, 1, 0, 1], [1.0, 0.5, 0.0, 0.5]),
        date(2026, 2, 1): (1, [1, 1, 0, 0], [1.0, 1.0, 0.0, 0.0]),
        date(2026, 3, 1): (1, [1, 0, 0, 0], [1.0, 0.0, 0.0, 0.0]),
    }
    assert (table.since, table.until) == (at("2026-01-01"), at("2026-04-01"))


async def test_cohort_months_not_begun_are_null_and_ranges_snap_to_whole_months(
    session: AsyncSession,
) -> None:
    table = await reports.cohorts(session, Range(at("2026-01-20"), at("2026-03-02")), 3, now=at("2026-04-15"))
    assert [c.month for c in table.cohorts] == [date(2026, 1, 1), date(2026, 2, 1), date(2026, 3, 1)]
    assert table.cohorts[0].active == [2, 1, 0, 1]  # A on 10 January counts although since is the 20th
    assert table.cohorts[1].active == [1, 1, 0, None]  # May has not begun on 15 April
    assert table.cohorts[2].retention == [1.0, 0.0, None, None]


async def test_retention_per_month(session: AsyncSession) -> None:
    report = await reports.retention(session, JAN_TO_MAY, Interval.MONTH, 180, now=NOW)
    got = [(p.start, p.buyers, p.previous_buyers, p.retained, p.retention_rate) for p in report.periods]
    assert got == [
        (date(2026, 1, 1), 2, 1, 0, 0.0),  # December: D only, who did not buy in January
        (date(2026, 2, 1), 3, 2, 1, 0.5),  # January: A, B; A again in February
        (date(2026, 3, 1), 2, 3, 1, 0.3333),  # February: A, C, D; C again in March
        (date(2026, 4, 1), 1, 2, 0, 0.0),  # March: C, E; April: A only
    ]
    assert report.periods[-1].end == date(2026, 5, 1)
    repeat = report.repeat_customers  # in the range: A 3, B 2, C 2, D 1 (December is outside), E 1
    assert (repeat.customers, repeat.repeat_customers, repeat.share) == (5, 3, 0.6)


async def test_retention_per_week_crosses_year_and_month_ends(session: AsyncSession) -> None:
    window = Range(at("2026-01-19"), at("2026-02-09"))  # three ISO weeks: 19 Jan, 26 Jan, 2 Feb
    report = await reports.retention(session, window, Interval.WEEK, 180, now=NOW)
    got = [(p.start, p.buyers, p.previous_buyers, p.retained) for p in report.periods]
    # B on Sunday 25 January belongs to the week of the 19th, B on Wednesday the 28th to the next one.
    assert got == [(date(2026, 1, 19), 1, 0, 0), (date(2026, 1, 26), 1, 1, 1), (date(2026, 2, 2), 1, 1, 0)]
    assert report.periods[1].retention_rate == 1.0
    assert report.periods[0].retention_rate is None  # nobody bought in the week before


async def test_period_index_in_sql_equals_python(session: AsyncSession) -> None:
    for interval in Interval:
        column = queries.period_index(session, PurchaseFact.occurred_at, interval)
        rows = await session.execute(select(PurchaseFact.occurred_at, column))
        for moment, index in rows:
            assert index == index_of(moment, interval), (interval, moment)
            assert start_of(index, interval) <= moment.date() < start_of(index + 1, interval)


async def test_churn_by_lapse_as_of_until(session: AsyncSession) -> None:
    churn = await reports.churn(session, at("2026-05-01"), 60, now=NOW)
    # Cut-off 2 March: B (28 Jan), C (1 Mar), D (10 Feb) lapsed; A (20 Apr) and E (31 Mar) not.
    assert churn.basis is ChurnBasis.LAPSE_DAYS
    assert (churn.customers, churn.churned, churn.rate, churn.as_of) == (5, 3, 0.6, at("2026-05-01"))


async def test_churn_now_uses_the_value_model(session: AsyncSession, bare: AsyncSession) -> None:
    churn = await reports.churn(session, NOW, 180, now=NOW)
    # Buyers with a value row: A (active), B, C (inactive); F never bought, D and E have no row.
    assert churn.basis is ChurnBasis.CUSTOMER_VALUE
    assert (churn.customers, churn.churned, churn.rate) == (3, 2, 0.6667)
    fallback = await reports.churn(bare, NOW, 180, now=NOW)  # no customer_value table
    # Cut-off 17 December 2025: nobody's last purchase is that old.
    assert fallback.basis is ChurnBasis.LAPSE_DAYS
    assert (fallback.customers, fallback.churned) == (5, 0)
    assert (await reports.churn(bare, NOW, 100, now=NOW)).churned == 3  # before 7 March: B, C, D


async def test_new_vs_loyal_per_month(session: AsyncSession) -> None:
    report = await reports.new_vs_loyal(session, JAN_TO_MAY, Interval.MONTH)
    assert report.currencies == ["EUR", "USD"]
    got = [
        (
            (p.new.customers, p.new.purchases, p.new.revenue),
            (p.returning.customers, p.returning.purchases, p.returning.revenue),
        )
        for p in report.periods
    ]
    assert got == [
        ((2, 3, {"EUR": 4000, "USD": 1000}), (0, 0, {})),  # A and B first buy in January
        ((1, 1, {"EUR": 4000}), (2, 2, {"EUR": 2800})),  # C new; A and D (first in December) return
        ((1, 1, {"EUR": 600}), (1, 1, {"EUR": 1000})),  # E new; C returns
        ((0, 0, {}), (1, 1, {"EUR": 500})),
    ]


async def test_revenue_by_tier_is_net_and_per_currency(session: AsyncSession) -> None:
    report = await reports.revenue_by_tier(session, JAN_TO_MAY)
    assert report.available
    assert report.currencies == ["EUR", "USD"]
    got = {
        t.tier: (
            t.customers,
            [(c.currency, c.purchased_minor, c.refunded_minor, c.net_minor) for c in t.by_currency],
        )
        for t in report.tiers
    }
    assert list(got) == ["top", "high", "medium", "rest", "unclassified"]
    assert got == {
        "top": (1, [("EUR", 3500, 200, 3300)]),
        "high": (1, [("EUR", 3000, 0, 3000), ("USD", 1000, 1000, 0)]),
        "medium": (0, []),
        "rest": (1, [("EUR", 5000, 0, 5000)]),
        "unclassified": (2, [("EUR", 1400, 0, 1400)]),  # D (December is outside the range) and E
    }
    assert report.tiers[0].by_currency[0].purchases == 3
    assert report.tiers[0].by_currency[0].refunds == 1


async def test_defection_reasons(session: AsyncSession) -> None:
    report = await reports.defections(session, JAN_TO_MAY)
    assert report.available
    assert report.total == 4
    assert [(r.reason, r.defections, r.customers, r.share) for r in report.reasons] == [
        ("price", 3, 2, 0.75),
        ("service", 1, 1, 0.25),
    ]


async def test_without_value_tables_the_answer_explains(bare: AsyncSession) -> None:
    tiers = await reports.revenue_by_tier(bare, JAN_TO_MAY)
    assert (tiers.available, tiers.tiers) == (False, [])
    assert tiers.explanation
    assert "customer_value" in tiers.explanation
    lost = await reports.defections(bare, JAN_TO_MAY)
    assert (lost.available, lost.total) == (False, 0)
    assert lost.explanation
    assert "defections" in lost.explanation


@pytest.mark.parametrize(
    ("since", "until", "field"),
    [
        (datetime(2026, 1, 1), None, "query.since"),
        (None, datetime(2026, 1, 1), "query.until"),
        (at("2026-02-01"), at("2026-01-01"), "query.since"),
        (at("2026-01-01"), at("2026-01-01"), "query.since"),
        (at("2022-01-01"), at("2026-01-01"), "query.since"),
        (None, at("2020-01-01") - timedelta(days=1), None),  # default since: a year before until — fine
    ],
)
def test_bad_ranges_name_the_field(since: datetime | None, until: datetime | None, field: str | None) -> None:
    if field is None:
        window = resolve_range(since, until, now=NOW)
        assert window.until - window.since == timedelta(days=365)
        return
    with pytest.raises(InvalidInput) as caught:
        resolve_range(since, until, now=NOW)
    assert caught.value.errors[0].field == field


def test_three_years_is_the_limit() -> None:
    assert resolve_range(at("2023-01-01"), at("2026-01-01"), now=NOW).since == at("2023-01-01")
    with pytest.raises(InvalidInput):
        resolve_range(at("2022-12-30"), at("2026-01-01"), now=NOW)


async def test_every_chart_renders_as_png_and_svg(session: AsyncSession, bare: AsyncSession) -> None:
    figures: list[Any] = [
        await reports.cohorts(session, Range(at("2026-01-01"), at("2026-04-01")), 3, now=NOW),
        await reports.retention(session, JAN_TO_MAY, Interval.WEEK, 180, now=NOW),
        await reports.new_vs_loyal(session, JAN_TO_MAY, Interval.MONTH),
        await reports.revenue_by_tier(session, JAN_TO_MAY),
        await reports.defections(session, JAN_TO_MAY),
        await reports.revenue_by_tier(bare, JAN_TO_MAY),
        await reports.defections(bare, JAN_TO_MAY),
    ]
    for report in figures:
        png = charts.render(report, charts.ChartFormat.PNG)
        assert png.startswith(b"\x89PNG\r\n\x1a\n")
        assert len(png) > 5000
        svg = charts.render(report, charts.ChartFormat.SVG)
        root = ET.fromstring(svg)
        assert root.tag.endswith("svg")
        assert svg == charts.render(report, charts.ChartFormat.SVG)  # deterministic: no date inside
    cohort_svg = charts.render(figures[0], charts.ChartFormat.SVG).decode()
    assert "Cohort retention" in cohort_svg
    assert "50%" in cohort_svg
