"""HTTP routes of the segmentation analytics (definitions: see the package docstring).

Every endpoint answers JSON by default and a chart of the same figures with `format=png` or
`format=svg`. `since`/`until` must carry a time zone; by default the year before now; at most three
years apart. Bad parameters are a 422 naming the query field.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from services.segmentation.analytics import charts, reports
from services.segmentation.analytics.periods import Interval, Range, resolve_range
from services.segmentation.analytics.schemas import (
    AnalyticsFormat,
    CohortTable,
    DefectionReport,
    MixReport,
    RetentionReport,
    TierReport,
)
from shared.errors import PROBLEM_RESPONSES
from shared.runtime import UowDep

router = APIRouter(prefix="/analytics", tags=["analytics"])

SinceQuery = Annotated[
    datetime | None,
    Query(
        description="Start of the range, inclusive, with a time zone; default: a year before `until`",
        examples=["2026-01-01T00:00:00Z"],
    ),
]
UntilQuery = Annotated[
    datetime | None,
    Query(
        description="End of the range, exclusive, with a time zone; default: now. At most three years "
        "after `since`",
        examples=["2027-01-01T00:00:00Z"],
    ),
]
IntervalQuery = Annotated[
    Interval, Query(description="Length of each period: day, week (ISO, from Monday) or month (UTC)")
]
FormatQuery = Annotated[
    AnalyticsFormat,
    Query(
        alias="format", description="`json` for the figures; `png` or `svg` for a chart of the same figures"
    ),
]

_FORMATS = (
    " Answers JSON by default; `format=png` or `format=svg` gives a chart of the same figures (title, "
    "range, axis labels, legend). `since`/`until` need a time zone (default: the last year; at most "
    "three years); naive times, `since` ≥ `until`, a longer range or an unknown `format` are a 422 "
    "naming the query field."
)


def _responses(model: type[Any]) -> dict[int | str, dict[str, Any]]:
    return {
        **PROBLEM_RESPONSES,
        200: {
            "model": model,
            "description": "The figures (JSON), or their chart",
            "content": {
                "image/png": {"schema": {"type": "string", "format": "binary"}},
                "image/svg+xml": {"schema": {"type": "string"}},
            },
        },
    }


def _window(since: datetime | None, until: datetime | None) -> tuple[Range, datetime]:
    now = datetime.now(UTC)
    return resolve_range(since, until, now=now), now


async def _answer(report: charts.Report, fmt: AnalyticsFormat) -> Response:
    if fmt is AnalyticsFormat.JSON:
        return Response(report.model_dump_json(), media_type="application/json")
    chart = charts.ChartFormat(fmt.value)
    image = await asyncio.to_thread(charts.render, report, chart)  # CPU work, off the event loop
    return Response(image, media_type=chart.media_type, headers={"Cache-Control": "no-store"})


@router.get(
    "/cohorts",
    response_model=CohortTable,
    summary="Cohort retention table",
    description=(
        "Customers grouped by the month of their first purchase ever (the whole months `[since, until)` "
        "touches); for each month k = 0…`months` after it, how many of the cohort bought in month k and "
        "which share of the cohort that is (k = 0: the cohort's own month, 100 %). Months that have not "
        "begun yet are null. The chart is a heatmap, one row per cohort." + _FORMATS
    ),
    responses=_responses(CohortTable),
)
async def cohorts(
    uow: UowDep,
    since: SinceQuery = None,
    until: UntilQuery = None,
    months: Annotated[int, Query(ge=1, le=36, description="Months followed after the first one")] = 12,
    fmt: FormatQuery = AnalyticsFormat.JSON,
) -> Response:
    window, now = _window(since, until)
    async with uow:
        report = await reports.cohorts(uow.session, window, months, now=now)
    return await _answer(report, fmt)


@router.get(
    "/retention",
    response_model=RetentionReport,
    summary="Retention rate, repeat-customer share and churn",
    description=(
        "Per period: buyers, buyers of the period before, and the retention rate — customers who bought "
        "in the previous period and again in this one ÷ customers who bought in the previous period. "
        "Over the range: the repeat-customer share (customers with ≥ 2 purchases ÷ customers with ≥ 1). "
        "Churn rate: customers whose last purchase is more than `lapse_days` old at `until` ÷ customers "
        "with a purchase; when `until` is now and the value model's `customer_value.active` is there, "
        "churned = not active among customers with a purchase (`churn.basis` says which)." + _FORMATS
    ),
    responses=_responses(RetentionReport),
)
async def retention(
    uow: UowDep,
    since: SinceQuery = None,
    until: UntilQuery = None,
    interval: IntervalQuery = Interval.MONTH,
    lapse_days: Annotated[
        int, Query(ge=1, le=3650, description="Days without a purchase after which a customer is churned")
    ] = 180,
    fmt: FormatQuery = AnalyticsFormat.JSON,
) -> Response:
    window, now = _window(since, until)
    async with uow:
        report = await reports.retention(uow.session, window, interval, lapse_days, now=now)
    return await _answer(report, fmt)


@router.get(
    "/new-vs-loyal",
    response_model=MixReport,
    summary="New vs returning buyers",
    description=(
        "Per period: customers, purchases and gross revenue (per currency) from first-time buyers — "
        "whose first purchase ever is in that period — and from returning buyers, who had bought "
        "before it." + _FORMATS
    ),
    responses=_responses(MixReport),
)
async def new_vs_loyal(
    uow: UowDep,
    since: SinceQuery = None,
    until: UntilQuery = None,
    interval: IntervalQuery = Interval.MONTH,
    fmt: FormatQuery = AnalyticsFormat.JSON,
) -> Response:
    window, _ = _window(since, until)
    async with uow:
        report = await reports.new_vs_loyal(uow.session, window, interval)
    return await _answer(report, fmt)


@router.get(
    "/revenue-by-tier",
    response_model=TierReport,
    summary="Net revenue by value tier",
    description=(
        "Net spend — purchases minus refunds made in the range, per currency (never added together) — "
        "of the customers of each value tier (`customer_value.value_tier`: top, high, medium, rest; "
        "`unclassified` for customers without a value row). Without the value tables in this database "
        "the answer says so: `available: false` with an `explanation`." + _FORMATS
    ),
    responses=_responses(TierReport),
)
async def revenue_by_tier(
    uow: UowDep,
    since: SinceQuery = None,
    until: UntilQuery = None,
    fmt: FormatQuery = AnalyticsFormat.JSON,
) -> Response:
    window, _ = _window(since, until)
    async with uow:
        report = await reports.revenue_by_tier(uow.session, window)
    return await _answer(report, fmt)


@router.get(
    "/defections",
    response_model=DefectionReport,
    summary="Defection reasons",
    description=(
        "Defections recorded in the range, counted by reason (most frequent first), with the distinct "
        "customers and each reason's share. Without the `defections` table in this database the "
        "answer says so: `available: false` with an `explanation`." + _FORMATS
    ),
    responses=_responses(DefectionReport),
)
async def defections(
    uow: UowDep,
    since: SinceQuery = None,
    until: UntilQuery = None,
    fmt: FormatQuery = AnalyticsFormat.JSON,
) -> Response:
    window, _ = _window(since, until)
    async with uow:
        report = await reports.defections(uow.session, window)
    return await _answer(report, fmt)
