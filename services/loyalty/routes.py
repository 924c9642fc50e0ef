"""Loyalty's HTTP routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from services.loyalty import service
from services.loyalty.schemas import BalanceOut, LedgerLineOut
from shared.errors import Problem
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
