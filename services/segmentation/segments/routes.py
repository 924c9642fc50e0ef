"""Segments' HTTP routes (`router`): define, preview, upload, read membership."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Response, status

from services.segmentation.analytics.periods import Interval, resolve_range
from services.segmentation.segments import rules, service
from services.segmentation.segments.schemas import (
    EXAMPLE_RULES,
    Catalogue,
    CatalogueField,
    CustomerSegments,
    MemberPage,
    MembershipResult,
    MembersUpload,
    PreviewIn,
    PreviewOut,
    SegmentHistoryOut,
    SegmentIn,
    SegmentList,
    SegmentOut,
)
from shared.errors import PROBLEM_RESPONSES, InvalidInput, Problem
from shared.runtime import UowDep

router = APIRouter(tags=["segments"])

NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": Problem, "description": "No such segment"}}
RULE_ERRORS = (
    "An invalid rule is a 422 whose `errors` name each faulty path, e.g. `body.rule.all.1.field` "
    "(unknown field, with close matches), `body.rule.all.0.value` (wrong type for the operator), "
    "`body.rule.any.2.purchases.within_days`, or `body.rule.in_segment` (unknown segment, or a chain of "
    "references coming back to this segment)."
)
LANGUAGE = (
    'Rules: `{"all": [...]}`, `{"any": [...]}`, `{"not": rule}`; comparisons '
    '`{"field": "net_spend_minor", "op": ">=", "value": 10000}` on the fields of '
    '`GET /segments/catalogue`; time windows `{"purchases": {"within_days": 90, "at_least": 3}}` '
    "(also `spend` with `currency`, `refunds`, `contacts` with `channel`/`kind`/`direction`, `complaints` "
    'with `open`); `{"in_segment": "<id>"}`.'
)
SegmentBody = Annotated[SegmentIn, Body(openapi_examples=EXAMPLE_RULES)]  # type: ignore[arg-type]


@router.get(
    "/segments/catalogue",
    response_model=Catalogue,
    summary="What rules can test",
    description="Every field with its type, operators and vocabulary, and the time-window rules. " + LANGUAGE,
)
async def catalogue() -> Catalogue:
    return Catalogue(
        fields=[CatalogueField(**f) for f in rules.catalogue()],
        windows={
            kind: ["within_days", "at_least", "at_most", *spec.filters]
            for kind, spec in rules.WINDOWS.items()
        },
    )


@router.post(
    "/segments/preview",
    response_model=PreviewOut,
    summary="Preview a rule: how many customers match, and a sample",
    description="Evaluates the rule now, inside the database, without saving anything: the count and "
    "up to 20 matching customer ids. " + LANGUAGE + " " + RULE_ERRORS,
    responses=PROBLEM_RESPONSES,
)
async def preview(body: PreviewIn, uow: UowDep) -> PreviewOut:
    return await service.preview(uow, body)


@router.post(
    "/segments",
    status_code=status.HTTP_201_CREATED,
    response_model=MembershipResult,
    summary="Create a segment",
    description=(
        "A `rule` segment is evaluated at once (backfill, inside the database) and then kept current: "
        "after every relevant event for a customer, and by a scheduled pass when the rule depends on "
        "time (`within_last_days`, windows, `days_since_*`). A `static` segment starts empty: upload "
        "its members with `POST /segments/{id}/members`. Every entry publishes "
        "`crm.segmentation.segment_entered.v1`. A name already used is a 409. " + RULE_ERRORS
    ),
    responses={**PROBLEM_RESPONSES, 409: {"model": Problem, "description": "Name already used"}},
)
async def create(body: SegmentBody, uow: UowDep, response: Response) -> MembershipResult:
    result = await service.create(uow, body)
    response.headers["Location"] = f"/segments/{result.segment.id}"
    return result


@router.put(
    "/segments/{segment_id}",
    response_model=MembershipResult,
    summary="Replace a segment's definition",
    description=(
        "Replaces name, description and rule (the kind cannot change), bumps `version`, re-evaluates "
        "the segment and every segment referring to it, and publishes `segment_entered` / "
        "`segment_exited` for the difference. " + RULE_ERRORS
    ),
    responses={**PROBLEM_RESPONSES, **NOT_FOUND, 409: {"model": Problem, "description": "Name already used"}},
)
async def replace(segment_id: str, body: SegmentBody, uow: UowDep) -> MembershipResult:
    return await service.replace(uow, segment_id, body)


@router.get("/segments", response_model=SegmentList, summary="List segments", description="Oldest first.")
async def list_segments(uow: UowDep) -> SegmentList:
    return SegmentList(items=await service.list_segments(uow))


@router.get(
    "/segments/{segment_id}",
    response_model=SegmentOut,
    summary="Read a segment",
    description="The definition, its version, when it was last evaluated in batch, and the member count.",
    responses=NOT_FOUND,
)
async def read(segment_id: str, uow: UowDep) -> SegmentOut:
    return await service.read(uow, segment_id)


@router.get(
    "/segments/{segment_id}/members",
    response_model=MemberPage,
    summary="A segment's members",
    description="Customer ids in ascending order with the time each entered; page with `cursor`.",
    responses=NOT_FOUND,
)
async def members(
    segment_id: str,
    uow: UowDep,
    cursor: Annotated[str | None, Query(description="`next_cursor` of the previous page")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> MemberPage:
    return await service.members(uow, segment_id, cursor, limit)


HISTORY_SPAN = timedelta(days=90)
HISTORY_START = datetime(1970, 1, 1, tzinfo=UTC)  # no membership is older
HISTORY_END = datetime(9000, 1, 1, tzinfo=UTC)  # far enough; keeps every period's end a valid date


@router.get(
    "/segments/{segment_id}/history",
    response_model=SegmentHistoryOut,
    summary="A segment's membership over time",
    description=(
        "From the recorded history of every entry and exit (real-time re-evaluation, backfill, the "
        "scheduled pass, uploads, merges, erasure, deletion): for each day, ISO week or calendar month "
        "(UTC) that `[since, until)` touches, the members at its end, and the entries and exits during "
        "it. Computed in the database. `since`/`until` need a time zone (default: the 90 days before "
        "now; at most three years apart); naive times, `since` ≥ `until`, a longer range or an unknown "
        "`interval` are a 422 naming the query field. An erased customer's history is removed."
    ),
    responses={**PROBLEM_RESPONSES, **NOT_FOUND},
)
async def history(
    segment_id: str,
    uow: UowDep,
    since: Annotated[
        datetime | None,
        Query(
            description="Start of the range, inclusive, with a time zone; default: 90 days before `until`",
            examples=["2026-11-01T00:00:00Z"],
        ),
    ] = None,
    until: Annotated[
        datetime | None,
        Query(
            description="End of the range, exclusive, with a time zone; default: now",
            examples=["2026-12-01T00:00:00Z"],
        ),
    ] = None,
    interval: Annotated[
        Interval, Query(description="Length of each period: day, week (ISO, from Monday) or month (UTC)")
    ] = Interval.DAY,
) -> SegmentHistoryOut:
    now = datetime.now(UTC)
    for name, moment in (("until", until), ("since", since)):
        if moment is None:
            continue
        if moment.tzinfo is None:
            raise InvalidInput(f"query.{name}", "give a time zone (e.g. Z or +01:00)")
        if not HISTORY_START <= moment < HISTORY_END:
            raise InvalidInput(f"query.{name}", "must lie between 1970 and the year 9000")
    if since is None:
        since = max((until or now) - HISTORY_SPAN, HISTORY_START)
    window = resolve_range(since, until, now=now)
    return await service.history(uow, segment_id, window, interval)


@router.post(
    "/segments/{segment_id}/members",
    response_model=MembershipResult,
    summary="Upload members of a static segment",
    description=(
        "Adds the customers (or, with `replace: true`, makes them the whole membership), publishing "
        "`segment_entered` / `segment_exited` for each change. Unknown or erased customers are a 422 "
        "naming `body.customer_ids.N`; a rule segment is a 409."
    ),
    responses={
        **PROBLEM_RESPONSES,
        **NOT_FOUND,
        409: {"model": Problem, "description": "Not a static segment"},
    },
)
async def upload(
    segment_id: str,
    body: Annotated[
        MembersUpload,
        Body(
            openapi_examples={
                "add": {
                    "summary": "Add two customers",
                    "value": {
                        "customer_ids": [
                            "9b7e1c1e-3f5d-4c1a-8a43-2c6d1f0e9a10",
                            "0c5d7a52-1e0b-4d7e-b7c0-5f3a9e2d8b41",
                        ]
                    },
                },
                "replace": {
                    "summary": "Replace the whole list",
                    "value": {"customer_ids": ["9b7e1c1e-3f5d-4c1a-8a43-2c6d1f0e9a10"], "replace": True},
                },
            }
        ),
    ],
    uow: UowDep,
) -> MembershipResult:
    return await service.upload(uow, segment_id, body)


@router.delete(
    "/segments/{segment_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a segment",
    description=(
        "Every member exits (`segment_exited` with cause `deletion`); the history stays. A segment "
        "another segment refers to (`in_segment`) is a 409 naming those segments."
    ),
    responses={**NOT_FOUND, 409: {"model": Problem, "description": "Referred to by other segments"}},
)
async def delete(segment_id: str, uow: UowDep) -> Response:
    await service.remove(uow, segment_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/customers/{customer_id}/segments",
    response_model=CustomerSegments,
    summary="The segments a customer belongs to",
    description="By segment name, with the time the customer entered each.",
)
async def customer_segments(customer_id: str, uow: UowDep) -> CustomerSegments:
    return await service.customer_segments(uow, customer_id)
