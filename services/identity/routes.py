"""Identity's HTTP routes (thin: parse, call a use case, shape the answer)."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from services.identity import service
from services.identity.schemas import CustomerCreate, CustomerOut
from shared.errors import PROBLEM_RESPONSES, Problem
from shared.runtime import UowDep

router = APIRouter(prefix="/customers", tags=["customers"])


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=CustomerOut,
    summary="Register a customer",
    description="Creates a customer profile and publishes `crm.identity.customer_registered.v1`.",
    responses=PROBLEM_RESPONSES,
)
async def create_customer(body: CustomerCreate, uow: UowDep, response: Response) -> CustomerOut:
    row = await service.register_customer(uow, body)
    response.headers["Location"] = f"/customers/{row.id}"
    response.headers["ETag"] = f'"{row.version}"'
    return CustomerOut.model_validate(row)


@router.get(
    "/{customer_id}",
    response_model=CustomerOut,
    summary="Read a customer",
    responses={404: {"model": Problem, "description": "No such customer"}},
)
async def read_customer(customer_id: str, uow: UowDep, response: Response) -> CustomerOut:
    row = await service.get_customer(uow, customer_id)
    response.headers["ETag"] = f'"{row.version}"'
    return CustomerOut.model_validate(row)
