"""HTTP routes of households: create one, add and remove members, read it with its pooled balance,
move points within it (pool transfers). Every write accepts an `Idempotency-Key`."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from fastapi import APIRouter, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from services.loyalty import households, programs
from services.loyalty.domain import MAX_POSTING
from services.loyalty.routes import REFUSALS, idempotent_write, transaction_out
from services.loyalty.schemas import TransactionOut
from services.loyalty.tables import Household
from shared.context import actor_var
from shared.errors import Problem
from shared.idempotency import IdempotencyKey
from shared.runtime import UowDep
from shared.uow import UnitOfWork

router = APIRouter(tags=["households"])


class HouseholdIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=120, examples=["The Garcia household"])
    owner_member_id: str = Field(
        description="The member who manages it; becomes its first member", examples=["5d0b2a7e-..."]
    )
    pooling_enabled: bool = Field(default=True, description="Members may move points to each other")
    max_members: int = Field(default=6, ge=1, le=50, description="Members at most, the owner included")


class HouseholdMemberIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    member_id: str = Field(examples=["9a41c0de-..."])


class PoolTransferIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    from_member_id: str = Field(examples=["5d0b2a7e-..."])
    to_member_id: str = Field(examples=["9a41c0de-..."])
    points: int = Field(gt=0, le=MAX_POSTING, examples=[1200])
    reason: str | None = Field(default=None, max_length=500, examples=["Pooling for a family reward"])


class HouseholdMemberOut(BaseModel):
    member_id: str
    customer_id: str
    status: str
    available: int = Field(description="The member's available points", examples=[800])
    owner: bool


class HouseholdOut(BaseModel):
    id: str
    program_id: str
    name: str
    owner_member_id: str
    pooling_enabled: bool
    max_members: int
    created_at: datetime
    updated_at: datetime
    version: int
    members: list[HouseholdMemberOut]
    pooled_balance: int = Field(description="The sum of the members' available points", examples=[2150])

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "1f6a3e0c-7d2b-4a8e-9c55-0e4b1a2c3d4f",
                    "program_id": "gold-club",
                    "name": "The Garcia household",
                    "owner_member_id": "5d0b2a7e-1c3d-4e5f-8a9b-0c1d2e3f4a5b",
                    "pooling_enabled": True,
                    "max_members": 4,
                    "created_at": "2026-11-24T09:30:00Z",
                    "updated_at": "2026-11-24T09:35:00Z",
                    "version": 2,
                    "members": [
                        {
                            "member_id": "5d0b2a7e-1c3d-4e5f-8a9b-0c1d2e3f4a5b",
                            "customer_id": "c-101",
                            "status": "active",
                            "available": 1350,
                            "owner": True,
                        },
                        {
                            "member_id": "9a41c0de-2b3c-4d5e-6f70-8192a3b4c5d6",
                            "customer_id": "c-102",
                            "status": "active",
                            "available": 800,
                            "owner": False,
                        },
                    ],
                    "pooled_balance": 2150,
                }
            ]
        }
    )


async def household_out(uow: UnitOfWork, household: Household) -> HouseholdOut:
    view = await households.view(uow.session, household)
    return HouseholdOut(
        id=household.id,
        program_id=household.program_id,
        name=household.name,
        owner_member_id=household.owner_member_id,
        pooling_enabled=household.pooling_enabled,
        max_members=household.max_members,
        created_at=household.created_at,
        updated_at=household.updated_at,
        version=household.version,
        members=[
            HouseholdMemberOut(
                member_id=m.member_id,
                customer_id=m.customer_id,
                status=m.status,
                available=m.available,
                owner=m.owner,
            )
            for m in view.members
        ],
        pooled_balance=view.pooled_balance,
    )


HOUSEHOLD_REFUSALS: dict[int | str, dict[str, Any]] = {
    **REFUSALS,
    404: {"model": Problem, "description": "No such program, household or member"},
    409: {
        "model": Problem,
        "description": "The member already belongs to another household, not enough points, or the "
        "Idempotency-Key was used for another request",
    },
}


@router.post(
    "/programs/{program_id}/households",
    status_code=status.HTTP_201_CREATED,
    response_model=HouseholdOut,
    summary="Create a household",
    description=(
        "A household of the program, managed by `owner_member_id`, who becomes its first member (a "
        "member belongs to one household at most: 409 otherwise). With `pooling_enabled`, its members "
        "may move points to each other by pool transfers, free of the program's transfer limits."
    ),
    responses=HOUSEHOLD_REFUSALS,
)
async def create_household(
    program_id: str, body: HouseholdIn, uow: UowDep, idempotency_key: IdempotencyKey = None
) -> JSONResponse:
    async def action() -> tuple[int, Any]:
        program = await programs.get_program(uow.session, program_id)
        household = await households.create(
            uow.session,
            program,
            name=body.name,
            owner_member_id=body.owner_member_id,
            pooling_enabled=body.pooling_enabled,
            max_members=body.max_members,
        )
        return 201, (await household_out(uow, household)).model_dump(mode="json")

    return await idempotent_write(
        uow,
        scope=f"create_household:{program_id}",
        key=idempotency_key,
        payload=body.model_dump(mode="json"),
        action=action,
    )


@router.get(
    "/programs/{program_id}/households/{household_id}",
    response_model=HouseholdOut,
    summary="Read a household with its members and pooled balance",
    description="The pooled balance is the sum of the members' available points.",
    responses={404: {"model": Problem, "description": "No such household in this program"}},
)
async def read_household(program_id: str, household_id: str, uow: UowDep) -> HouseholdOut:
    async with uow:
        household = await households.get_household(uow.session, program_id, household_id)
        return await household_out(uow, household)


@router.post(
    "/programs/{program_id}/households/{household_id}/members",
    status_code=status.HTTP_201_CREATED,
    response_model=HouseholdOut,
    summary="Add a member to a household",
    description=(
        "The member must be an active member of the same program and in no other household (409 "
        "otherwise). Refused with 422 (rule `household.full`) when the household already has "
        "`max_members`. Adding a member already in the household answers 200 and changes nothing."
    ),
    responses={**HOUSEHOLD_REFUSALS, 200: {"model": HouseholdOut, "description": "Already a member"}},
)
async def add_household_member(
    program_id: str,
    household_id: str,
    body: HouseholdMemberIn,
    uow: UowDep,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    async def action() -> tuple[int, Any]:
        household, added = await households.add_member(uow.session, program_id, household_id, body.member_id)
        return (201 if added else 200), (await household_out(uow, household)).model_dump(mode="json")

    return await idempotent_write(
        uow,
        scope=f"household_member:{household_id}",
        key=idempotency_key,
        payload=body.model_dump(mode="json"),
        action=action,
    )


@router.delete(
    "/programs/{program_id}/households/{household_id}/members/{member_id}",
    response_model=HouseholdOut,
    summary="Remove a member from a household",
    description=(
        "The member keeps their points. The owner leaves last (422, rule `household.owner`, while "
        "others remain)."
    ),
    responses=HOUSEHOLD_REFUSALS,
)
async def remove_household_member(
    program_id: str, household_id: str, member_id: str, uow: UowDep, idempotency_key: IdempotencyKey = None
) -> JSONResponse:
    async def action() -> tuple[int, Any]:
        household = await households.remove_member(uow.session, program_id, household_id, member_id)
        return 200, (await household_out(uow, household)).model_dump(mode="json")

    return await idempotent_write(
        uow,
        scope=f"household_leave:{household_id}:{member_id}",
        key=idempotency_key,
        payload={"member_id": member_id},
        action=action,
    )


@router.post(
    "/programs/{program_id}/households/{household_id}/pool-transfers",
    status_code=status.HTTP_201_CREATED,
    response_model=TransactionOut,
    summary="Move points between members of a household",
    description=(
        "Pooled redemption: a ledger transfer (kind `pool_transfer`) from one member of the household "
        "to another, so one of them can redeem the pooled points. Free of the program's transfer "
        "limits; the points keep their expiry dates. Refused (422): pooling disabled "
        "(`household.pooling`), a member outside the household (`household.member`), an inactive "
        "member; 409 when the sender has fewer available points."
    ),
    responses=HOUSEHOLD_REFUSALS,
)
async def pool_transfer(
    program_id: str,
    household_id: str,
    body: PoolTransferIn,
    uow: UowDep,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    async def action() -> tuple[int, Any]:
        program = await programs.get_program(uow.session, program_id)
        posted = await households.pool_transfer(
            uow.session,
            program,
            household_id,
            from_member_id=body.from_member_id,
            to_member_id=body.to_member_id,
            points=body.points,
            reference=f"pool:{household_id}:{idempotency_key or uuid.uuid4()}",
            reason=body.reason,
            actor=actor_var.get(),
        )
        return 201, (await transaction_out(uow, posted.transaction)).model_dump(mode="json")

    return await idempotent_write(
        uow,
        scope=f"pool_transfer:{household_id}",
        key=idempotency_key,
        payload=body.model_dump(mode="json"),
        action=action,
    )
