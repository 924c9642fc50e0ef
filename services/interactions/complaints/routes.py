"""HTTP routes: complaints — open, read, the work queue, status changes, assignment, messages, the
service-level policies, the SLA watch on demand and the compliance report."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Response, status

from services.interactions.complaints import domain, service, sla
from services.interactions.complaints.domain import ComplaintStatus, Priority
from services.interactions.complaints.models import Complaint
from services.interactions.complaints.schemas import (
    Assignment,
    ComplaintCreate,
    ComplaintDetail,
    ComplaintEventOut,
    ComplaintOut,
    ComplaintPage,
    MessageCreate,
    SlaPolicyIn,
    SlaPolicyOut,
    SlaReport,
    SlaScanResult,
    StatusChange,
)
from services.interactions.domain import Channel
from services.interactions.routes import DirectoryDep
from shared.errors import PROBLEM_RESPONSES, InvalidInput, Problem
from shared.runtime import RuntimeDep, UowDep

router = APIRouter(tags=["complaints"])

NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": Problem, "description": "No such complaint"}}
CHANGE_RESPONSES: dict[int | str, dict[str, Any]] = {
    **PROBLEM_RESPONSES,
    **NOT_FOUND,
    409: {"model": Problem, "description": "The lifecycle forbids this change (names the field)"},
    412: {"model": Problem, "description": "Stale If-Match: someone changed the complaint since your read"},
}
IfMatch = Annotated[
    str | None,
    Header(
        alias="If-Match",
        description='The ETag of your read (e.g. "3"): the change is refused with 412 if the complaint '
        "changed since",
    ),
]


def _if_match(value: str | None) -> int | None:
    if value is None or value.strip() == "*":
        return None
    try:
        return int(value.strip().removeprefix("W/").strip('"'))
    except ValueError as exc:
        raise InvalidInput("header.If-Match", 'give the ETag from a read, e.g. "3"') from exc


def complaint_out(c: Complaint, now: datetime | None = None) -> ComplaintOut:
    now = now or datetime.now(UTC)
    return ComplaintOut.model_validate(
        {
            **{column: getattr(c, column) for column in ComplaintOut.model_fields if hasattr(c, column)},
            "allowed_next": domain.allowed_next(ComplaintStatus(c.status)),
            "overdue": domain.is_overdue(c.next_due_at, now),
            "answered": c.first_response_at is not None,
        }
    )


def detail_out(view: service.ComplaintView, response: Response) -> ComplaintDetail:
    response.headers["ETag"] = f'"{view.complaint.version}"'
    return ComplaintDetail(
        **complaint_out(view.complaint).model_dump(),
        events=[ComplaintEventOut.model_validate(e) for e in view.events],
    )


# --- service-level policies ------------------------------------------------------------------------


@router.get(
    "/sla-policies",
    response_model=list[SlaPolicyOut],
    summary="Complaint service-level policies",
    description=(
        "First-response and resolution targets for every channel and priority: the operator's where set "
        "(`source: custom`), else the defaults (urgent 1 h / 24 h, high 4 h / 72 h, normal 24 h / 7 days, "
        "low 72 h / 14 days). Targets run on calendar time from the moment the complaint was opened."
    ),
)
async def list_sla_policies(uow: UowDep) -> list[SlaPolicyOut]:
    return await sla.list_policies(uow)


@router.put(
    "/sla-policies/{channel}/{priority}",
    response_model=SlaPolicyOut,
    summary="Set a complaint service-level policy",
    description=(
        "Sets the targets for complaints opened from now on through `channel` with `priority`. "
        "Complaints already open keep the due dates they were given. The resolution target cannot be "
        "shorter than the first-response target."
    ),
    responses=PROBLEM_RESPONSES,
)
async def put_sla_policy(
    channel: Channel, priority: Priority, body: SlaPolicyIn, uow: UowDep
) -> SlaPolicyOut:
    return await sla.set_policy(uow, channel, priority, body)


# --- complaints ------------------------------------------------------------------------------------


@router.post(
    "/complaints",
    status_code=status.HTTP_201_CREATED,
    response_model=ComplaintDetail,
    summary="Open a complaint",
    description=(
        "Opens a complaint (claim) for a customer (`customer_id`; a merged id is recorded for its "
        "survivor). Its due dates come from the SLA policy of its channel and priority. In one "
        "transaction: the complaint, its first history row (with `description`, the customer's words), "
        "a `complaint` row on the customer's timeline, and `crm.interactions.complaint_opened.v1`. The "
        "same `idempotency_key` from the same `source_system` opens it once: a repeat returns the "
        "first with 200. An unknown or erased customer is refused with 422 naming `body.customer_id`."
    ),
    responses={**PROBLEM_RESPONSES, 200: {"model": ComplaintDetail, "description": "Already opened"}},
)
async def open_complaint(
    body: ComplaintCreate, uow: UowDep, directory: DirectoryDep, response: Response
) -> ComplaintDetail:
    view, created = await service.open_complaint(uow, directory, body)
    if not created:
        response.status_code = status.HTTP_200_OK
    response.headers["Location"] = f"/complaints/{view.complaint.id}"
    return detail_out(view, response)


@router.get(
    "/complaints",
    response_model=ComplaintPage,
    summary="The complaint queue",
    description=(
        "Complaints by SLA urgency: overdue first (the longest overdue on top), then the nearest due "
        "date (first response while unanswered, then resolution); resolved and closed ones last. "
        "Filter by `status`, `priority`, `channel` (repeatable), `owner_id`, `customer_id` (a merged id "
        "means its survivor) and `overdue`. Keyset-paginated: pass `next_cursor` back as `cursor`."
    ),
    responses=PROBLEM_RESPONSES,
)
async def complaint_queue(
    uow: UowDep,
    directory: DirectoryDep,
    status_: Annotated[list[ComplaintStatus] | None, Query(alias="status")] = None,
    owner_id: Annotated[str | None, Query(max_length=100)] = None,
    customer_id: Annotated[str | None, Query(min_length=1, max_length=36)] = None,
    priority: Annotated[list[Priority] | None, Query()] = None,
    channel: Annotated[list[Channel] | None, Query()] = None,
    overdue: Annotated[bool | None, Query(description="Only overdue (true) or only not overdue")] = None,
    cursor: Annotated[str | None, Query(max_length=300)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> ComplaintPage:
    rows, next_cursor = await service.queue(
        uow,
        directory,
        service.QueueQuery(
            statuses=[s.value for s in status_ or []],
            owner_id=owner_id,
            customer_id=customer_id,
            priorities=[p.value for p in priority or []],
            channels=[c.value for c in channel or []],
            overdue=overdue,
            cursor=cursor,
            limit=limit,
        ),
    )
    now = datetime.now(UTC)
    return ComplaintPage(items=[complaint_out(r, now) for r in rows], next_cursor=next_cursor)


@router.post(
    "/complaints/sla-scan",
    response_model=SlaScanResult,
    summary="Run the SLA watch now",
    description=(
        "Finds complaints past a due date (first response or resolution) not yet escalated for it, marks "
        "them breached, raises their escalation level, records the escalation in their history and "
        "publishes `crm.interactions.complaint_sla_breached.v1` — once per complaint and target, even "
        "with several replicas scanning at once. The same watch runs in the background every "
        "`CRM_INTERACTIONS_COMPLAINT_SLA_SCAN_INTERVAL` seconds; this is for operators and tests."
    ),
)
async def sla_scan(runtime: RuntimeDep) -> SlaScanResult:
    now = datetime.now(UTC)
    return SlaScanResult(scanned_at=now, escalated=await sla.scan(runtime.uow, now=now))


@router.get(
    "/complaints/sla-report",
    response_model=SlaReport,
    summary="SLA compliance report",
    description=(
        "Per channel and priority, for complaints opened in [`since`, `until`) (default: the last 30 "
        "days; at most 366 days): how many were opened, answered and resolved, the share answered and "
        "resolved within target (among those whose target is decided: met, or past due), the median "
        "first-response and resolution times in minutes, and how many complaints are overdue now."
    ),
    responses=PROBLEM_RESPONSES,
)
async def sla_report(
    uow: UowDep,
    since: Annotated[datetime | None, Query(examples=["2026-11-01T00:00:00Z"])] = None,
    until: Annotated[datetime | None, Query(examples=["2026-12-01T00:00:00Z"])] = None,
) -> SlaReport:
    return await sla.report(uow, since, until)


@router.get(
    "/complaints/{complaint_id}",
    response_model=ComplaintDetail,
    summary="Read a complaint",
    description="The complaint, where it stands against its targets, and its whole history in order. "
    "The `ETag` header is its version: send it as `If-Match` when changing it.",
    responses=NOT_FOUND,
)
async def read_complaint(complaint_id: str, uow: UowDep, response: Response) -> ComplaintDetail:
    return detail_out(await service.get(uow, complaint_id), response)


@router.post(
    "/complaints/{complaint_id}/status",
    response_model=ComplaintDetail,
    summary="Change a complaint's status",
    description=(
        "Moves the complaint through its lifecycle: opened → acknowledged → in_progress → resolved → "
        "closed, or reopened (from resolved or closed). A change the lifecycle forbids is refused with "
        "409 naming `body.status` and listing `allowed_next`; closing needs `customer_agreed: true` "
        "(else 422 naming `body.customer_agreed`). Acknowledging (or resolving, if nothing came before) "
        "is the first response. A reopen keeps the original due dates. Publishes "
        "`crm.interactions.complaint_status_changed.v1` with `answered` and `open`."
    ),
    responses=CHANGE_RESPONSES,
)
async def change_status(
    complaint_id: str, body: StatusChange, uow: UowDep, response: Response, if_match: IfMatch = None
) -> ComplaintDetail:
    view = await service.change_status(uow, complaint_id, body, _if_match(if_match))
    return detail_out(view, response)


@router.post(
    "/complaints/{complaint_id}/assign",
    response_model=ComplaintDetail,
    summary="Assign a complaint's owner",
    description=(
        "Gives the complaint an owner with authority: `owner_authority_minor` is how much compensation "
        "they may grant on their own (minor units of `owner_authority_currency`). Recorded in the "
        "history. A closed complaint is refused with 409: reopen it first."
    ),
    responses=CHANGE_RESPONSES,
)
async def assign_complaint(
    complaint_id: str, body: Assignment, uow: UowDep, response: Response, if_match: IfMatch = None
) -> ComplaintDetail:
    return detail_out(await service.assign(uow, complaint_id, body, _if_match(if_match)), response)


@router.post(
    "/complaints/{complaint_id}/messages",
    response_model=ComplaintDetail,
    status_code=status.HTTP_201_CREATED,
    summary="Add a message to a complaint",
    description=(
        "A message from the customer (`inbound`) or to them (`outbound`), kept in the complaint's "
        "history and on the customer's timeline. The first outbound message is the first response; "
        "on a complaint still `opened` it also acknowledges it (publishing the status change). "
        "Refused with 410 once the customer was erased."
    ),
    responses={**CHANGE_RESPONSES, 410: {"model": Problem, "description": "The customer was erased"}},
)
async def add_message(
    complaint_id: str,
    body: MessageCreate,
    uow: UowDep,
    directory: DirectoryDep,
    response: Response,
    if_match: IfMatch = None,
) -> ComplaintDetail:
    view = await service.add_message(uow, directory, complaint_id, body, _if_match(if_match))
    return detail_out(view, response)


@router.get(
    "/customers/{customer_id}/complaints",
    response_model=list[ComplaintOut],
    summary="A customer's complaints",
    description="Newest first, including those opened for customers since merged into this one. A merged "
    "id shows its survivor's complaints.",
    responses={404: {"model": Problem}, 410: {"model": Problem}},
)
async def customer_complaints(
    customer_id: str, uow: UowDep, directory: DirectoryDep, limit: Annotated[int, Query(ge=1, le=500)] = 100
) -> list[ComplaintOut]:
    now = datetime.now(UTC)
    return [
        complaint_out(c, now) for c in await service.customer_complaints(uow, directory, customer_id, limit)
    ]
