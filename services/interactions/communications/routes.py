"""HTTP routes: communications (messages sent to customers) and their delivery events."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from services.interactions.communications import service
from services.interactions.communications.domain import DeliveryStatus
from services.interactions.communications.schemas import (
    CommunicationCreate,
    CommunicationOut,
    DeliveryEventCreate,
)
from services.interactions.domain import Channel
from services.interactions.routes import DirectoryDep
from shared.errors import PROBLEM_RESPONSES, Problem
from shared.runtime import UowDep

router = APIRouter(tags=["communications"])


@router.post(
    "/communications",
    status_code=status.HTTP_201_CREATED,
    response_model=CommunicationOut,
    summary="Record a message sent to a customer",
    description=(
        "An e-mail, SMS, letter, call, push notification… sent to a customer, with the campaign and "
        "template it came from and the `address` it went to (personal data, erased with the customer). "
        "Adds a `communication` row (direction outbound) to the customer's timeline and publishes "
        "`crm.interactions.interaction_recorded.v1`. Its first delivery event is `status` (`sent` "
        "unless `queued`). An unknown or erased customer is a 422 naming `body.customer_id`. The same "
        "`idempotency_key` from the same `source_system` records it once: a repeat returns the first "
        "with 200."
    ),
    responses={**PROBLEM_RESPONSES, 200: {"model": CommunicationOut, "description": "Already recorded"}},
)
async def create_communication(
    body: CommunicationCreate, uow: UowDep, directory: DirectoryDep, response: Response
) -> CommunicationOut:
    row, created = await service.record(uow, directory, body)
    if not created:
        response.status_code = status.HTTP_200_OK
    response.headers["Location"] = f"/communications/{row.id}"
    return CommunicationOut.model_validate(row)


@router.post(
    "/communications/{communication_id}/delivery",
    status_code=status.HTTP_201_CREATED,
    response_model=CommunicationOut,
    summary="Record a delivery event",
    description=(
        "What happened to the message: `queued`, `sent`, `delivered`, `opened`, `clicked` (e-mail, "
        "SMS, app, web, social, chat), `bounced` (with `bounce_type` hard or soft, and the `reason`), "
        "`returned` (direct mail, with the `reason`) or `failed` (with the `reason`). Every event is "
        "kept in `deliveries`; `status` is the furthest reached, so late or repeated news does not "
        "move it back, and a soft bounce is overtaken by a later delivery. A bounce or return without "
        "a reason is a 422 naming `body.reason`; an event after a hard bounce, a return or a failure, "
        "or a failure after the message was opened, is a 409 naming `body.status`. An event with an "
        "`idempotency_key` already recorded for this message is not recorded again (200)."
    ),
    responses={
        **PROBLEM_RESPONSES,
        200: {"model": CommunicationOut, "description": "This event was recorded before"},
        404: {"model": Problem, "description": "No such communication"},
        409: {"model": Problem, "description": "Impossible after what already happened"},
    },
)
async def record_delivery(
    communication_id: str, body: DeliveryEventCreate, uow: UowDep, response: Response
) -> CommunicationOut:
    row, recorded = await service.record_delivery(uow, communication_id, body)
    if not recorded:
        response.status_code = status.HTTP_200_OK
    return CommunicationOut.model_validate(row)


@router.get(
    "/communications/{communication_id}",
    response_model=CommunicationOut,
    summary="Read a communication",
    description="The message, its current delivery status (with a bounce or return reason), its history.",
    responses={404: {"model": Problem, "description": "No such communication"}},
)
async def read_communication(communication_id: str, uow: UowDep) -> CommunicationOut:
    return CommunicationOut.model_validate(await service.get(uow, communication_id))


@router.get(
    "/customers/{customer_id}/communications",
    response_model=list[CommunicationOut],
    summary="A customer's communications",
    description=(
        "Messages sent to the customer, newest first, with their delivery history. Filter by current "
        "`status` and `channel` (repeatable) and by `campaign_id`. A merged customer's id shows the "
        "survivor's communications, which include the merged customer's."
    ),
    responses={
        **PROBLEM_RESPONSES,
        404: {"model": Problem, "description": "No such customer"},
        410: {"model": Problem, "description": "The customer was erased"},
    },
)
async def customer_communications(
    customer_id: str,
    uow: UowDep,
    directory: DirectoryDep,
    status_: Annotated[list[DeliveryStatus] | None, Query(alias="status")] = None,
    channel: Annotated[list[Channel] | None, Query()] = None,
    campaign_id: Annotated[str | None, Query(max_length=100)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> list[CommunicationOut]:
    rows = await service.list_for_customer(
        uow,
        directory,
        customer_id,
        statuses=[s.value for s in status_ or []],
        channels=[c.value for c in channel or []],
        campaign_id=campaign_id,
        limit=limit,
    )
    return [CommunicationOut.model_validate(r) for r in rows]
