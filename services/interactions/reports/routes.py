"""HTTP routes: reports on contacts, satisfaction and complaints, as JSON or as a chart.

Every report takes `interval` (day, week or month), `since`/`until` (timezone-aware; by default the
last 90 days; at most 731 days apart) and `format`: `json` (the default) for the figures, `png` or
`svg` for a chart of the same figures, e.g. `GET /reports/contacts?interval=week&format=svg`.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from services.interactions.domain import Channel, InteractionKind
from services.interactions.reports import charts, service
from services.interactions.reports.periods import MAX_SPAN, Interval, ReportRange, resolve_range
from services.interactions.reports.schemas import (
    ComplaintsReport,
    ContactsReport,
    ReportFormat,
    SatisfactionReport,
)
from shared.errors import PROBLEM_RESPONSES
from shared.runtime import UowDep

router = APIRouter(tags=["reports"])

IntervalQuery = Annotated[
    Interval, Query(description="Length of each period: day, week (from Monday) or month")
]
SinceQuery = Annotated[
    datetime | None,
    Query(
        description="Start of the range, inclusive, with a time zone; default: 90 days before `until`",
        examples=["2026-09-01T00:00:00Z"],
    ),
]
UntilQuery = Annotated[
    datetime | None,
    Query(
        description=f"End of the range, exclusive, with a time zone; default: now. At most {MAX_SPAN.days} "
        "days after `since`",
        examples=["2026-12-01T00:00:00Z"],
    ),
]
FormatQuery = Annotated[
    ReportFormat,
    Query(
        alias="format",
        description="`json` for the figures; `png` or `svg` for a chart of them (same figures, same URL)",
    ),
]
ChannelQuery = Annotated[list[Channel] | None, Query(description="Only these channels (repeatable)")]

_FORMATS = (
    "Answers JSON by default; with `format=png` or `format=svg` the same figures as a chart (title, "
    "axis labels, legend, periods labelled by their first day, UTC). Periods are UTC days, ISO weeks "
    "(from Monday) or calendar months; the first and last may be partial. `since`/`until` must carry a "
    f"time zone; by default the last 90 days; at most {MAX_SPAN.days} days."
)


def _responses(model: type[Any]) -> dict[int | str, dict[str, Any]]:
    return {
        **PROBLEM_RESPONSES,
        200: {
            "model": model,
            "description": "The report (JSON), or its chart",
            "content": {
                "image/png": {"schema": {"type": "string", "format": "binary"}},
                "image/svg+xml": {"schema": {"type": "string"}},
            },
        },
    }


def _range(since: datetime | None, until: datetime | None, interval: Interval) -> ReportRange:
    return resolve_range(since, until, interval, now=datetime.now(UTC))


async def _answer(
    report: ContactsReport | SatisfactionReport | ComplaintsReport, fmt: ReportFormat
) -> Response:
    if fmt is ReportFormat.JSON:
        return Response(report.model_dump_json(), media_type="application/json")
    chart = charts.ChartFormat(fmt.value)
    image = await asyncio.to_thread(charts.render, report, chart)  # CPU work, off the event loop
    return Response(image, media_type=chart.media_type, headers={"Cache-Control": "no-store"})


@router.get(
    "/reports/contacts",
    response_model=ContactsReport,
    summary="Contacts per channel over time",
    description=(
        "How many contacts (every row of the customers' timelines: inquiries, visits, purchases, "
        "complaints, survey answers, messages…) each channel had per period. Filter by `kind` "
        "(repeatable). " + _FORMATS
    ),
    responses=_responses(ContactsReport),
)
async def contacts_report(
    uow: UowDep,
    interval: IntervalQuery = Interval.WEEK,
    since: SinceQuery = None,
    until: UntilQuery = None,
    kind: Annotated[list[InteractionKind] | None, Query(description="Only these kinds (repeatable)")] = None,
    fmt: FormatQuery = ReportFormat.JSON,
) -> Response:
    kinds = sorted(k.value for k in kind or [])
    return await _answer(await service.contacts(uow, _range(since, until, interval), kinds), fmt)


@router.get(
    "/reports/satisfaction",
    response_model=SatisfactionReport,
    summary="Satisfaction and NPS trends",
    description=(
        "Per period: surveys answered, average CSAT (1–5), NPS (% promoters − % detractors, with the "
        "counts of promoters, passives and detractors), and the overall attribute score (its mean, and "
        "as a share of the maximum). Filter by survey `channel` (repeatable). " + _FORMATS
    ),
    responses=_responses(SatisfactionReport),
)
async def satisfaction_report(
    uow: UowDep,
    interval: IntervalQuery = Interval.WEEK,
    since: SinceQuery = None,
    until: UntilQuery = None,
    channel: ChannelQuery = None,
    fmt: FormatQuery = ReportFormat.JSON,
) -> Response:
    channels = sorted(c.value for c in channel or [])
    return await _answer(await service.satisfaction(uow, _range(since, until, interval), channels), fmt)


@router.get(
    "/reports/complaints",
    response_model=ComplaintsReport,
    summary="Complaint volumes, resolution times and SLA compliance",
    description=(
        "Per period: complaints opened (also per priority) and resolved, the median time to first "
        "response (of complaints first answered in the period) and to resolution (of complaints "
        "resolved in the period), and SLA compliance of the complaints opened in the period for "
        "first response and resolution: met / (met + missed), where missed means reached late, "
        "flagged as breached, or still not reached after its due time; targets not yet due are "
        "pending and left out. Filter by complaint `channel` (repeatable). " + _FORMATS
    ),
    responses=_responses(ComplaintsReport),
)
async def complaints_report(
    uow: UowDep,
    interval: IntervalQuery = Interval.WEEK,
    since: SinceQuery = None,
    until: UntilQuery = None,
    channel: ChannelQuery = None,
    fmt: FormatQuery = ReportFormat.JSON,
) -> Response:
    channels = sorted(c.value for c in channel or [])
    return await _answer(await service.complaints(uow, _range(since, until, interval), channels), fmt)
