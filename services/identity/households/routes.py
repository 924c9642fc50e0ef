"""Households' and organisation contacts' HTTP routes."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response, status

from services.identity.consents.customers import CustomerIds, OrganisationIds
from services.identity.households import service
from services.identity.households.schemas import (
    ContactIn,
    ContactOut,
    HouseholdCreate,
    HouseholdOut,
    MemberIn,
)
from shared.errors import PROBLEM_RESPONSES, Problem
from shared.runtime import UowDep

router = APIRouter(tags=["households"])

NO_HOUSEHOLD: dict[int | str, dict[str, Any]] = {404: {"model": Problem, "description": "No such household"}}
NO_CUSTOMER: dict[int | str, dict[str, Any]] = {404: {"model": Problem, "description": "No such customer"}}
IN_ANOTHER: dict[int | str, dict[str, Any]] = {
    409: {"model": Problem, "description": "A person is already in a household (the field names whom)"}
}


@router.post(
    "/households",
    status_code=status.HTTP_201_CREATED,
    response_model=HouseholdOut,
    summary="Create a household",
    description=(
        "A family of person customers with their roles (head, partner, child, other). Members must be "
        "existing persons, each listed once, at most one head, none already in another household (409)."
    ),
    responses={**PROBLEM_RESPONSES, **IN_ANOTHER},
)
async def create_household(body: HouseholdCreate, uow: UowDep, response: Response) -> HouseholdOut:
    household = await service.create_household(uow, body)
    response.headers["Location"] = f"/households/{household.id}"
    return HouseholdOut.model_validate(household)


@router.get(
    "/households/{household_id}",
    response_model=HouseholdOut,
    summary="Read a household",
    responses=NO_HOUSEHOLD,
)
async def read_household(household_id: str, uow: UowDep) -> HouseholdOut:
    return HouseholdOut.model_validate(await service.get_household(uow, household_id))


@router.post(
    "/households/{household_id}/members",
    status_code=status.HTTP_201_CREATED,
    response_model=HouseholdOut,
    summary="Add a member to a household",
    description="Adds an existing person who is in no household yet; returns the household.",
    responses={**PROBLEM_RESPONSES, **NO_HOUSEHOLD, **IN_ANOTHER},
)
async def add_member(household_id: str, body: MemberIn, uow: UowDep) -> HouseholdOut:
    return HouseholdOut.model_validate(await service.add_member(uow, household_id, body))


@router.delete(
    "/households/{household_id}/members/{customer_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Remove a member from a household",
    responses={404: {"model": Problem, "description": "No such household, or not a member of it"}},
)
async def remove_member(household_id: str, customer_id: str, uow: UowDep) -> Response:
    await service.remove_member(uow, household_id, customer_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/customers/{customer_id}/household",
    response_model=HouseholdOut | None,
    summary="A customer's household",
    description="The household the customer belongs to, or `null` when none.",
    responses=NO_CUSTOMER,
)
async def customer_household(customer_ids: CustomerIds, uow: UowDep) -> HouseholdOut | None:
    household = await service.household_of(uow, customer_ids)
    return HouseholdOut.model_validate(household) if household is not None else None


@router.post(
    "/customers/{organisation_id}/contacts",
    status_code=status.HTTP_201_CREATED,
    response_model=ContactOut,
    summary="Link a contact person to an organisation",
    description=(
        "Records that a person customer acts for an organisation customer, with a role or title. "
        "422 when the path's customer is not an organisation or the body's is not a person; "
        "409 when already linked."
    ),
    responses={
        **PROBLEM_RESPONSES,
        **NO_CUSTOMER,
        409: {"model": Problem, "description": "Already a contact of this organisation"},
        410: {"model": Problem, "description": "The organisation was erased"},
    },
)
async def add_contact(organisation_ids: OrganisationIds, body: ContactIn, uow: UowDep) -> ContactOut:
    return ContactOut.model_validate(await service.add_contact(uow, organisation_ids, body))


@router.get(
    "/customers/{organisation_id}/contacts",
    response_model=list[ContactOut],
    summary="An organisation's contact persons",
    responses={**PROBLEM_RESPONSES, **NO_CUSTOMER},
)
async def list_contacts(organisation_ids: OrganisationIds, uow: UowDep) -> list[ContactOut]:
    return [ContactOut.model_validate(link) for link in await service.list_contacts(uow, organisation_ids)]


@router.delete(
    "/customers/{organisation_id}/contacts/{customer_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Unlink a contact person from an organisation",
    responses={**PROBLEM_RESPONSES, 404: {"model": Problem, "description": "No such customer or link"}},
)
async def remove_contact(organisation_ids: OrganisationIds, customer_id: str, uow: UowDep) -> Response:
    await service.remove_contact(uow, organisation_ids, customer_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
