"""Households' and organisation contacts' use cases, and their right-of-access and erasure parts.

Households hold person customers only, each in at most one household and at most one head per
household. Organisation contacts link an organisation customer to person customers with a role.
Customers referenced in a body must exist and not be erased (422 naming the field); customers in
the path must exist (404) and, to be written to, not be erased (410). Reads resolve a golden record
through all its ids; links are stored under the ids given.

Export shows the customer's own household (its name and the customer's role, not the other
members: they are someone else's data) and the contact links the customer is part of. Erasure
removes the customer's memberships and contact links, and a household left without members.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.identity.consents.customers import customer_kinds, require_customer
from services.identity.households.domain import HouseholdRole, check_new_members
from services.identity.households.models import HouseholdMemberRow, HouseholdRow, OrganisationContactRow
from services.identity.households.repository import ContactRepository, HouseholdRepository
from services.identity.households.schemas import ContactIn, ContactOut, HouseholdCreate, MemberIn
from shared.errors import Conflict, FieldError, InvalidInput, NotFound
from shared.uow import UnitOfWork

PERSON, ORGANISATION = "person", "organisation"


async def _require_persons(session: AsyncSession, members: Sequence[tuple[str, str]]) -> None:
    """`members` are (field, customer id): each must be an existing person, else 422 on its field."""
    kinds = await customer_kinds(session, {customer_id for _, customer_id in members}, live_only=True)
    for field, customer_id in members:
        kind = kinds.get(customer_id)
        if kind is None:
            raise InvalidInput(field, f"unknown customer {customer_id}")
        if kind != PERSON:
            raise InvalidInput(field, f"customer {customer_id} is an {kind}, not a person")


async def _refuse_other_households(session: AsyncSession, members: Sequence[tuple[str, str]]) -> None:
    held = await HouseholdRepository(session).memberships({customer_id for _, customer_id in members})
    for field, customer_id in members:
        if customer_id in held:
            raise Conflict(
                f"customer {customer_id} already belongs to household {held[customer_id]}",
                errors=[FieldError(field, f"already a member of household {held[customer_id]}")],
                household_id=held[customer_id],
            )


async def _flush_memberships(session: AsyncSession) -> None:
    try:
        await session.flush()
    except IntegrityError as exc:
        # A concurrent request put one of these persons in a household first.
        raise Conflict("a member joined another household concurrently; retry") from exc


async def create_household(uow: UnitOfWork, data: HouseholdCreate) -> HouseholdRow:
    check_new_members([(m.customer_id, m.role) for m in data.members])
    fields = [(f"body.members.{i}.customer_id", m.customer_id) for i, m in enumerate(data.members)]
    now = datetime.now(UTC)
    household = HouseholdRow(
        id=str(uuid.uuid4()),
        name=data.name,
        created_at=now,
        updated_at=now,
        members=[
            HouseholdMemberRow(customer_id=m.customer_id, role=m.role.value, joined_at=now)
            for m in data.members
        ],
    )
    async with uow:
        await _require_persons(uow.session, fields)
        await _refuse_other_households(uow.session, fields)
        HouseholdRepository(uow.session).add(household)
        await _flush_memberships(uow.session)
        await uow.commit()
    return household


async def get_household(uow: UnitOfWork, household_id: str) -> HouseholdRow:
    async with uow:
        household = await HouseholdRepository(uow.session).get(household_id)
    if household is None:
        raise NotFound(f"household {household_id} does not exist", household_id=household_id)
    return household


async def add_member(uow: UnitOfWork, household_id: str, data: MemberIn) -> HouseholdRow:
    async with uow:
        household = await HouseholdRepository(uow.session).get(household_id, for_update=True)
        if household is None:
            raise NotFound(f"household {household_id} does not exist", household_id=household_id)
        field = [("body.customer_id", data.customer_id)]
        await _require_persons(uow.session, field)
        await _refuse_other_households(uow.session, field)
        if data.role is HouseholdRole.HEAD and any(m.role == HouseholdRole.HEAD for m in household.members):
            raise InvalidInput("body.role", "the household already has a head")
        now = datetime.now(UTC)
        household.members.append(
            HouseholdMemberRow(customer_id=data.customer_id, role=data.role.value, joined_at=now)
        )
        household.updated_at = now
        await _flush_memberships(uow.session)
        await uow.commit()
    return household


async def remove_member(uow: UnitOfWork, household_id: str, customer_id: str) -> None:
    async with uow:
        household = await HouseholdRepository(uow.session).get(household_id, for_update=True)
        if household is None:
            raise NotFound(f"household {household_id} does not exist", household_id=household_id)
        member = next((m for m in household.members if m.customer_id == customer_id), None)
        if member is None:
            raise NotFound(
                f"customer {customer_id} is not a member of household {household_id}",
                household_id=household_id,
                customer_id=customer_id,
            )
        household.members.remove(member)
        household.updated_at = datetime.now(UTC)
        await uow.commit()


async def household_of(uow: UnitOfWork, customer_ids: Sequence[str]) -> HouseholdRow | None:
    """The customer's household (for a golden record: the one its ids joined most recently), if any."""
    async with uow:
        await require_customer(uow.session, customer_ids[0])
        households = await HouseholdRepository(uow.session).households_of(customer_ids)
    return households[0] if households else None


async def _require_organisation(
    session: AsyncSession, organisation_id: str, *, writable: bool = False
) -> None:
    kind = await require_customer(session, organisation_id, writable=writable)
    if kind != ORGANISATION:
        raise InvalidInput(
            "path.organisation_id", f"customer {organisation_id} is a {kind}, not an organisation"
        )


async def add_contact(
    uow: UnitOfWork, organisation_ids: Sequence[str], data: ContactIn
) -> OrganisationContactRow:
    organisation_id = organisation_ids[0]
    async with uow:
        await _require_organisation(uow.session, organisation_id, writable=True)
        await _require_persons(uow.session, [("body.customer_id", data.customer_id)])
        repo = ContactRepository(uow.session)
        for held in await repo.of_organisations(organisation_ids):
            if held.person_id == data.customer_id:
                raise Conflict(
                    f"customer {data.customer_id} is already a contact of organisation {organisation_id}",
                    errors=[FieldError("body.customer_id", "already a contact of this organisation")],
                )
        contact = OrganisationContactRow(
            organisation_id=organisation_id,
            person_id=data.customer_id,
            role=data.role,
            created_at=datetime.now(UTC),
        )
        repo.add(contact)
        try:
            await uow.session.flush()
        except IntegrityError as exc:
            raise Conflict("the contact was added concurrently") from exc
        await uow.commit()
    return contact


async def list_contacts(uow: UnitOfWork, organisation_ids: Sequence[str]) -> list[OrganisationContactRow]:
    async with uow:
        await _require_organisation(uow.session, organisation_ids[0])
        return await ContactRepository(uow.session).of_organisations(organisation_ids)


async def remove_contact(uow: UnitOfWork, organisation_ids: Sequence[str], person_id: str) -> None:
    async with uow:
        await _require_organisation(uow.session, organisation_ids[0])
        repo = ContactRepository(uow.session)
        links = [c for c in await repo.of_organisations(organisation_ids) if c.person_id == person_id]
        if not links:
            raise NotFound(
                f"customer {person_id} is not a contact of organisation {organisation_ids[0]}",
                customer_id=person_id,
            )
        for link in links:
            await repo.delete(link)
        await uow.commit()


async def export_customer_data(session: AsyncSession, customer_ids: Sequence[str]) -> dict[str, Any]:
    """Right of access: the customer's household memberships and organisation contact links."""
    households = await HouseholdRepository(session).households_of(customer_ids)
    ids = set(customer_ids)
    return {
        "households": [
            {
                "household_id": household.id,
                "name": household.name,
                "customer_id": member.customer_id,
                "role": member.role,
                "joined_at": member.joined_at.isoformat(),
            }
            for household in households
            for member in household.members
            if member.customer_id in ids
        ],
        "organisation_contacts": [
            ContactOut.model_validate(link).model_dump(mode="json")
            for link in await ContactRepository(session).involving(customer_ids)
        ],
    }


async def erase_customer_data(session: AsyncSession, customer_ids: Sequence[str]) -> None:
    """Right to erasure, in the caller's transaction: leave households (deleting emptied ones) and drop
    every contact link the customer is part of."""
    repo = HouseholdRepository(session)
    ids = set(customer_ids)
    now = datetime.now(UTC)
    for household in await repo.households_of(customer_ids):
        for member in [m for m in household.members if m.customer_id in ids]:
            household.members.remove(member)
        if household.members:
            household.updated_at = now
        else:
            await repo.delete(household)
    await ContactRepository(session).delete_involving(customer_ids)
    await session.flush()
