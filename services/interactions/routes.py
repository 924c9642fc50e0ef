"""Interactions' HTTP routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response, status

from services.interactions import service
from services.interactions.directory import CustomerDirectory
from services.interactions.schemas import PurchaseCreate, PurchaseOut
from shared.errors import PROBLEM_RESPONSES, Problem
from shared.runtime import UowDep

router = APIRouter(tags=["purchases"])


def get_directory(request: Request) -> CustomerDirectory:
    directory: CustomerDirectory = request.app.state.directory
    return directory


DirectoryDep = Annotated[CustomerDirectory, Depends(get_directory)]


@router.post(
    "/purchases",
    status_code=status.HTTP_201_CREATED,
    response_model=PurchaseOut,
    summary="Record a purchase",
    description=(
        "Stores a purchase with its lines and publishes `crm.interactions.purchase_recorded.v1`. "
        "A purchase with an `external_id` already recorded from the same `source_system` is not "
        "recorded again: the first one is returned with 200."
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


@router.get(
    "/purchases/{purchase_id}",
    response_model=PurchaseOut,
    summary="Read a purchase",
    responses={404: {"model": Problem, "description": "No such purchase"}},
)
async def read_purchase(purchase_id: str, uow: UowDep) -> PurchaseOut:
    return PurchaseOut.model_validate(await service.get_purchase(uow, purchase_id))


@router.get(
    "/customers/{customer_id}/purchases", response_model=list[PurchaseOut], summary="A customer's purchases"
)
async def customer_purchases(
    customer_id: str, uow: UowDep, limit: Annotated[int, Query(ge=1, le=200)] = 50
) -> list[PurchaseOut]:
    purchases = await service.list_customer_purchases(uow, customer_id, limit)
    return [PurchaseOut.model_validate(p) for p in purchases]


@router.get(
    "/customers/{customer_id}/export",
    tags=["privacy"],
    summary="Right of access: every purchase held for this customer id",
)
async def export_customer(customer_id: str, uow: UowDep) -> dict[str, object]:
    purchases = await service.list_customer_purchases(uow, customer_id, limit=1_000_000)
    return {"purchases": [PurchaseOut.model_validate(p).model_dump(mode="json") for p in purchases]}
