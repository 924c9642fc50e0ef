"""Interactions' HTTP routes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response, status

from services.interactions import bulk_purchases, contacts, privacy, service
from services.interactions.directory import CustomerDirectory
from services.interactions.domain import Channel, InteractionKind
from services.interactions.schemas import (
    BulkInteractions,
    BulkPurchases,
    BulkResult,
    InteractionCreate,
    InteractionOut,
    PaymentStatusUpdate,
    PurchaseCreate,
    PurchaseOut,
    RefundCreate,
    RefundResult,
    TimelinePage,
)
from services.interactions.timeline import TimelineQuery
from shared.errors import PROBLEM_RESPONSES, InvalidInput, Problem
from shared.runtime import UowDep

router = APIRouter(tags=["purchases"])
contacts_router = APIRouter(tags=["contacts"])


async def get_directory(request: Request) -> CustomerDirectory:
    directory: CustomerDirectory = request.app.state.directory
    return directory


DirectoryDep = Annotated[CustomerDirectory, Depends(get_directory)]


@router.post(
    "/purchases",
    status_code=status.HTTP_201_CREATED,
    response_model=PurchaseOut,
    summary="Record a purchase",
    description=(
        "Stores a purchase with its lines (a row on the customer's timeline too) and publishes "
        "`crm.interactions.purchase_recorded.v1`. `payment_status` is `paid` unless given (`pending`, "
        "`authorized`, `failed`). A purchase with an `external_id` already recorded from the same "
        "`source_system` is not recorded again: the first one is returned with 200. An unknown or "
        "erased customer, a quantity below 1 or a negative price is a 422 naming the field."
    ),
    responses={**PROBLEM_RESPONSES, 200: {"model": PurchaseOut, "description": "Already recorded"}},
)
async def create_purchase(
    body: PurchaseCreate, uow: UowDep, directory: DirectoryDep, response: Response
) -> PurchaseOut:
    purchase, created = await service.record_purchase(uow, directory, body)
    if not created:
        response.status_code = status.HTTP_200_OK
    response.headers["Location"] = f"/purchases/{purchase.id}"
    return PurchaseOut.model_validate(purchase)


@router.post(
    "/purchases/bulk",
    response_model=BulkResult,
    summary="Record many purchases at once",
    description=(
        "Up to 5,000 purchases in one request and one transaction, each shaped like the body of "
        "`POST /purchases` and validated on its own: a bad item is reported with its index, field and "
        "reason and never blocks the valid ones. An `external_id` already recorded from the same "
        "`source_system` (or repeated in the batch) is reported as a duplicate. One "
        "`crm.interactions.purchase_recorded.v1` per purchase created."
    ),
    responses=PROBLEM_RESPONSES,
)
async def create_purchases_bulk(body: BulkPurchases, uow: UowDep, directory: DirectoryDep) -> BulkResult:
    return await bulk_purchases.record_purchases_bulk(uow, directory, body.items)


@router.get(
    "/purchases/{purchase_id}",
    response_model=PurchaseOut,
    summary="Read a purchase",
    description=(
        "The purchase with its lines (and how many units of each came back), its payment status, its "
        "refunds oldest first, the refunded total and what is left to refund."
    ),
    responses={404: {"model": Problem, "description": "No such purchase"}},
)
async def read_purchase(purchase_id: str, uow: UowDep) -> PurchaseOut:
    return PurchaseOut.model_validate(await service.get_purchase(uow, purchase_id))


@router.post(
    "/purchases/{purchase_id}/payment-status",
    response_model=PurchaseOut,
    summary="Change a purchase's payment status",
    description=(
        "Allowed: `pending` → `authorized` | `paid` | `failed` | `cancelled`; `authorized` → `paid` | "
        "`failed` | `cancelled`; `failed` → `pending` | `paid` | `cancelled` (a retry). `paid` and "
        "`cancelled` are final here: `partially_refunded` and `refunded` follow from "
        "`POST /purchases/{id}/refunds` only. The current status again changes nothing (200). A "
        "forbidden change is a 409 naming `body.status`."
    ),
    responses={
        **PROBLEM_RESPONSES,
        404: {"model": Problem, "description": "No such purchase"},
        409: {"model": Problem, "description": "Not allowed from the current status"},
    },
)
async def change_payment_status(purchase_id: str, body: PaymentStatusUpdate, uow: UowDep) -> PurchaseOut:
    return PurchaseOut.model_validate(await service.change_payment_status(uow, purchase_id, body))


@router.post(
    "/purchases/{purchase_id}/refunds",
    status_code=status.HTTP_201_CREATED,
    response_model=RefundResult,
    summary="Record a return or refund",
    description=(
        "Goods coming back (`lines`: purchase line and quantity), money given back (`amount_minor`, "
        "with `currency`, which must be the purchase's), or both. Without an amount the returned goods "
        "are refunded at the price paid. Writes the refund, updates the purchase (returned quantities, "
        "refunded total, payment status `partially_refunded` or `refunded`), adds a `refund` row to the "
        "customer's timeline and publishes `crm.interactions.purchase_refunded.v1` (with the purchase "
        "total and the refunded total so far), all in one transaction.\n\n"
        "Refused with a 422 naming the field: more units than bought minus already returned "
        "(`body.lines.N.quantity`), an unknown line (`body.lines.N.line_no`), another currency "
        "(`body.currency`), more money than is left to refund (`body.amount_minor`). A purchase that "
        "was never paid (pending, authorized, failed, cancelled) is a 409. Refunds of one purchase are "
        "serialised: concurrent ones can never over-refund. The same `idempotency_key` from the same "
        "`source_system` records the refund once: a repeat returns the first with 200."
    ),
    responses={
        **PROBLEM_RESPONSES,
        200: {"model": RefundResult, "description": "Already recorded (same idempotency key)"},
        404: {"model": Problem, "description": "No such purchase"},
        409: {"model": Problem, "description": "Nothing was paid, or the key was used for another purchase"},
    },
)
async def create_refund(
    purchase_id: str, body: RefundCreate, uow: UowDep, response: Response
) -> RefundResult:
    refund, purchase, created = await service.record_refund(uow, purchase_id, body)
    if not created:
        response.status_code = status.HTTP_200_OK
    response.headers["Location"] = f"/purchases/{purchase.id}"
    return RefundResult.model_validate({"refund": refund, "purchase": purchase}, from_attributes=True)


@router.get(
    "/customers/{customer_id}/purchases",
    response_model=list[PurchaseOut],
    summary="A customer's purchases",
    description="Newest first, each with its payment status, refunds and refunded total.",
)
async def customer_purchases(
    customer_id: str, uow: UowDep, limit: Annotated[int, Query(ge=1, le=200)] = 50
) -> list[PurchaseOut]:
    purchases = await service.list_customer_purchases(uow, customer_id, limit)
    return [PurchaseOut.model_validate(p) for p in purchases]


@router.get(
    "/customers/{customer_id}/export",
    tags=["privacy"],
    summary="Right of access: everything held for this customer id",
    description=(
        "Purchases (with lines and refunds), every contact of the timeline, and every row of every "
        "other table holding this customer id (complaints and their history, surveys, messages and "
        "their delivery events…), whether recorded for this id or belonging to it after a merge."
    ),
)
async def export_customer(customer_id: str, uow: UowDep) -> dict[str, object]:
    purchases = await service.list_customer_purchases(uow, customer_id, limit=1_000_000)
    interactions = await service.list_customer_interactions(uow, customer_id)
    async with uow:
        tables = await privacy.export(uow.session, customer_id)
    for shown in ("purchases", "interactions"):
        tables.pop(shown, None)
    return {
        "purchases": [PurchaseOut.model_validate(p).model_dump(mode="json") for p in purchases],
        "interactions": [InteractionOut.model_validate(i).model_dump(mode="json") for i in interactions],
        "tables": tables,
    }


@contacts_router.post(
    "/interactions",
    status_code=status.HTTP_201_CREATED,
    response_model=InteractionOut,
    summary="Record a contact",
    description=(
        "Any contact on any channel: an inquiry, a visit, a service request, web or app activity, a "
        "note… The customer is given by `customer_id` or by one identifier (`customer.email`, "
        "`customer.phone`, `customer.card`) that the identity service resolves. Publishes "
        "`crm.interactions.interaction_recorded.v1` (without the free text). The same "
        "`idempotency_key` from the same `source_system` records the contact once: a repeat returns "
        "the first with 200."
    ),
    responses={**PROBLEM_RESPONSES, 200: {"model": InteractionOut, "description": "Already recorded"}},
)
async def create_interaction(
    body: InteractionCreate, uow: UowDep, directory: DirectoryDep, response: Response
) -> InteractionOut:
    row, created = await contacts.record(uow, directory, body)
    if not created:
        response.status_code = status.HTTP_200_OK
    response.headers["Location"] = f"/interactions/{row.id}"
    return InteractionOut.model_validate(row)


@contacts_router.post(
    "/interactions/bulk",
    response_model=BulkResult,
    summary="Record many contacts at once",
    description=(
        "Up to 5,000 contacts in one request and one transaction. Each item is validated on its own "
        "(same schema as `POST /interactions`): a malformed item is reported with its index, field and "
        "reason and never blocks the valid ones. Repeated idempotency keys are reported as duplicates."
    ),
    responses=PROBLEM_RESPONSES,
)
async def create_interactions_bulk(
    body: BulkInteractions, uow: UowDep, directory: DirectoryDep
) -> BulkResult:
    return await contacts.record_bulk(uow, directory, body.items)


@contacts_router.get(
    "/interactions/{interaction_id}",
    response_model=InteractionOut,
    summary="Read a contact",
    responses={404: {"model": Problem, "description": "No such contact"}},
)
async def read_interaction(interaction_id: str, uow: UowDep) -> InteractionOut:
    return InteractionOut.model_validate(await contacts.get(uow, interaction_id))


@contacts_router.get(
    "/customers/{customer_id}/timeline",
    response_model=TimelinePage,
    summary="The customer's timeline",
    description=(
        "Every contact, purchase, refund, complaint, survey answer and message of the customer, newest "
        "first. Filter by `kind` and `channel` (repeatable) and by time (`since` inclusive, `until` "
        "exclusive). Keyset-paginated: pass `next_cursor` back as `cursor`. A merged customer's id "
        "shows the survivor's timeline, which includes the merged customer's contacts."
    ),
    responses={**PROBLEM_RESPONSES, 404: {"model": Problem}, 410: {"model": Problem}},
)
async def customer_timeline(
    customer_id: str,
    uow: UowDep,
    directory: DirectoryDep,
    kind: Annotated[list[InteractionKind] | None, Query()] = None,
    channel: Annotated[list[Channel] | None, Query()] = None,
    since: Annotated[datetime | None, Query(examples=["2026-01-01T00:00:00Z"])] = None,
    until: Annotated[datetime | None, Query()] = None,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> TimelinePage:
    for name, moment in (("since", since), ("until", until)):
        if moment is not None and moment.tzinfo is None:
            raise InvalidInput(f"query.{name}", "give a time zone (e.g. Z or +01:00)")
    _, rows, next_cursor = await contacts.customer_timeline(
        uow,
        directory,
        TimelineQuery(
            customer_id=customer_id,
            kinds=[k.value for k in kind or []],
            channels=[c.value for c in channel or []],
            since=since,
            until=until,
            cursor=cursor,
            limit=limit,
        ),
    )
    return TimelinePage(items=[InteractionOut.model_validate(r) for r in rows], next_cursor=next_cursor)
