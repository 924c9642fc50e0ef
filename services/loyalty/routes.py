"""Loyalty's HTTP routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from services.loyalty import service
from services.loyalty.schemas import BalanceOut, LedgerLineOut
from shared.errors import NotFound, Problem
from shared.runtime import UowDep

router = APIRouter(prefix="/members", tags=["members"])


@router.get(
    "/{customer_id}/balance",
    response_model=BalanceOut,
    summary="A member's points balance",
    responses={404: {"model": Problem, "description": "The customer has no points account"}},
)
async def read_balance(customer_id: str, uow: UowDep) -> BalanceOut:
    return await service.balance(uow, customer_id)


@router.get(
    "/{customer_id}/transactions", response_model=list[LedgerLineOut], summary="A member's points history"
)
async def read_history(
    customer_id: str, uow: UowDep, limit: Annotated[int, Query(ge=1, le=200)] = 50
) -> list[LedgerLineOut]:
    return await service.history(uow, customer_id, limit)


@router.get(
    "/{customer_id}/export", tags=["privacy"], summary="Right of access: the member's points and history"
)
async def export_member(customer_id: str, uow: UowDep) -> dict[str, object]:
    try:
        balance: int | None = (await service.balance(uow, customer_id)).points
    except NotFound:
        balance = None
    history = await service.history(uow, customer_id, limit=1_000_000)
    return {"points": balance, "transactions": [h.model_dump(mode="json") for h in history]}
