"""HTTP routes of loyalty's reports: JSON figures by default, or a chart of the same figures with
`format=png` or `format=svg` (like the other services' reports).

- `GET /reports/liability` — points outstanding per program beside issued, redeemed, expired;
- `GET /programs/{id}/reports/expiring` — points expiring in the next 30/60/90 days;
- `GET /programs/{id}/reports/issuance` — points issued vs redeemed (and expired) per month;
- `GET /programs/{id}/reports/penetration` — members over customers known to loyalty;
- `GET /programs/{id}/reports/active-members` — members who earned or redeemed in the last N days.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from services.loyalty import programs
from services.loyalty.reports import charts, figures
from services.loyalty.reports.schemas import (
    ActiveMembersReport,
    ExpiringReport,
    IssuanceReport,
    LiabilityReport,
    PenetrationReport,
    ReportFormat,
)
from shared.errors import PROBLEM_RESPONSES, InvalidInput, Problem
from shared.runtime import UowDep

router = APIRouter(tags=["loyalty reports"])

FormatQuery = Annotated[
    ReportFormat,
    Query(
        alias="format",
        description="`json` for the figures; `png` or `svg` for a chart of them (same figures, same URL)",
    ),
]
AsOfQuery = Annotated[
    datetime | None,
    Query(
        description="The instant the report is taken at, with a time zone; default: now",
        examples=["2026-11-24T10:00:00Z"],
    ),
]
SinceQuery = Annotated[
    datetime | None,
    Query(
        description="Start of the range, inclusive, with a time zone; default: the start of the month 11 "
        "months before the current one (program time zone)",
        examples=["2026-01-01T00:00:00+01:00"],
    ),
]
UntilQuery = Annotated[
    datetime | None,
    Query(
        description=f"End of the range, exclusive, with a time zone; default: the end of the current month. "
        f"At most {figures.MAX_MONTHS} months",
        examples=["2027-01-01T00:00:00+01:00"],
    ),
]

_FORMATS = (
    " Answers JSON by default; `format=png` or `format=svg` gives a chart of the same figures (title, "
    "axis labels, legend). Times need a time zone (a naive one is a 422 naming the query field)."
)


def _responses(model: type[Any], *, program: bool = True) -> dict[int | str, dict[str, Any]]:
    out: dict[int | str, dict[str, Any]] = {
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
    if program:
        out[404] = {"model": Problem, "description": "No such program"}
    return out


async def _answer(report: charts.Report, fmt: ReportFormat) -> Response:
    if fmt is ReportFormat.JSON:
        return Response(report.model_dump_json(), media_type="application/json")
    chart = charts.ChartFormat(fmt.value)
    image = await asyncio.to_thread(charts.render, report, chart)  # CPU work, off the event loop
    return Response(image, media_type=chart.media_type, headers={"Cache-Control": "no-store"})


def _instant(value: datetime | None, name: str) -> datetime:
    if value is None:
        return datetime.now(UTC)
    if value.tzinfo is None:
        raise InvalidInput(f"query.{name}", "give a time zone (e.g. Z or +01:00)")
    return value.astimezone(UTC)


@router.get(
    "/reports/liability",
    response_model=LiabilityReport,
    summary="Outstanding points liability per program",
    description=(
        "Per program (or only `program_id`): the points members hold — `available` + `pending` + "
        "`reserved` = `outstanding`, what the program owes — beside the totals `issued` (net of "
        "clawbacks), `redeemed` and `expired`, summed from the entries of the program's and partners' "
        "accounts (they keep no cached balance). Every point issued is held, redeemed, expired or "
        "written off (`other`), so `balanced` is true unless the books are wrong." + _FORMATS
    ),
    responses=_responses(LiabilityReport, program=False),
)
async def liability_report(
    uow: UowDep,
    program_id: Annotated[str | None, Query(description="Only this program", examples=["gold-club"])] = None,
    fmt: FormatQuery = ReportFormat.JSON,
) -> Response:
    async with uow:
        report = await figures.liability(uow.session, program_id=program_id)
    return await _answer(report, fmt)


@router.get(
    "/programs/{program_id}/reports/expiring",
    response_model=ExpiringReport,
    summary="Points expiring in the next 30, 60 and 90 days",
    description=(
        "Available points that will expire within each window after `as_of` unless spent first "
        "(cumulative: the 60-day figure includes the 30-day one; `points_since_previous` is the part "
        "beyond the previous window). Expiry dates follow the program's policy; under the inactivity "
        "policy, the window counts all available points of members whose inactivity period ends in it "
        "(if they stay inactive). Windows: `days` (repeatable, 1–730; default 30, 60, 90)." + _FORMATS
    ),
    responses=_responses(ExpiringReport),
)
async def expiring_report(
    program_id: str,
    uow: UowDep,
    days: Annotated[
        list[int] | None, Query(description="Window lengths in days (repeatable)", examples=[[30, 60, 90]])
    ] = None,
    as_of: AsOfQuery = None,
    fmt: FormatQuery = ReportFormat.JSON,
) -> Response:
    windows = days or [30, 60, 90]
    if any(d < 1 or d > 730 for d in windows) or len(windows) > 12:
        raise InvalidInput("query.days", "1 to 12 windows of 1 to 730 days")
    moment = _instant(as_of, "as_of")
    async with uow:
        program = await programs.get_program(uow.session, program_id)
        report = await figures.expiring(uow.session, program, as_of=moment, windows=windows)
    return await _answer(report, fmt)


@router.get(
    "/programs/{program_id}/reports/issuance",
    response_model=IssuanceReport,
    summary="Points issued vs redeemed per month",
    description=(
        "Per calendar month in the program's time zone: points `issued` (credited to members by the "
        "program's or partners' issuer accounts: purchases, bonuses, positive adjustments), "
        "`clawed_back` (returned to them: refunds, negative adjustments, reversed earnings), "
        "`net_issued`, `redeemed` (net of reversed redemptions) and `expired`, from the ledger's "
        "entries. Default range: the last 12 months, the current one included." + _FORMATS
    ),
    responses=_responses(IssuanceReport),
)
async def issuance_report(
    program_id: str,
    uow: UowDep,
    since: SinceQuery = None,
    until: UntilQuery = None,
    fmt: FormatQuery = ReportFormat.JSON,
) -> Response:
    async with uow:
        program = await programs.get_program(uow.session, program_id)
        start, end = figures.resolve_months(since, until, program.timezone, now=datetime.now(UTC))
        report = await figures.issuance(uow.session, program, since=start, until=end)
    return await _answer(report, fmt)


@router.get(
    "/programs/{program_id}/reports/penetration",
    response_model=PenetrationReport,
    summary="Program penetration: members over customers",
    description=(
        "Customers known to loyalty (announced by identity's `customer_registered`; erased customers "
        "and customers merged into another are counted out) and the active or suspended members "
        "among them, now and at the end of each month of the range (today's customers and members "
        "counted by when they registered and enrolled). `members_unknown_customer` counts members "
        "whose registration loyalty never received. Default range: the last 12 months." + _FORMATS
    ),
    responses=_responses(PenetrationReport),
)
async def penetration_report(
    program_id: str,
    uow: UowDep,
    since: SinceQuery = None,
    until: UntilQuery = None,
    fmt: FormatQuery = ReportFormat.JSON,
) -> Response:
    async with uow:
        program = await programs.get_program(uow.session, program_id)
        start, end = figures.resolve_months(since, until, program.timezone, now=datetime.now(UTC))
        report = await figures.penetration(uow.session, program, since=start, until=end)
    return await _answer(report, fmt)


@router.get(
    "/programs/{program_id}/reports/active-members",
    response_model=ActiveMembersReport,
    summary="Active members: earned or redeemed in the last N days",
    description=(
        "Active or suspended members enrolled by `as_of`, and those who earned (points credited by an "
        "issuer account) or redeemed (points spent to a redeemed account) in the `days` before "
        "`as_of`; staff adjustments and reversals are not activity." + _FORMATS
    ),
    responses=_responses(ActiveMembersReport),
)
async def active_members_report(
    program_id: str,
    uow: UowDep,
    days: Annotated[int, Query(ge=1, le=730, description="The window, in days")] = 90,
    as_of: AsOfQuery = None,
    fmt: FormatQuery = ReportFormat.JSON,
) -> Response:
    moment = _instant(as_of, "as_of")
    async with uow:
        program = await programs.get_program(uow.session, program_id)
        report = await figures.active_members(uow.session, program, as_of=moment, days=days)
    return await _answer(report, fmt)
