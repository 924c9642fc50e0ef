"""Every query the households package makes lives here."""

from __future__ import annotations

from collections.abc import Collection, Sequence

from sqlalchemy import delete, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from services.identity.households.models import HouseholdMemberRow, HouseholdRow, OrganisationContactRow


class HouseholdRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, household_id: str, *, for_update: bool = False) -> HouseholdRow | None:
        query = (
            select(HouseholdRow)
            .options(selectinload(HouseholdRow.members))
            .where(HouseholdRow.id == household_id)
        )
        if for_update:
            query = query.with_for_update()
        return await self.session.scalar(query)

    async def memberships(self, customer_ids: Collection[str]) -> dict[str, str]:
        """customer id → household id, for those of these customers who are in a household."""
        if not customer_ids:
            return {}
        rows = await self.session.execute(
            select(HouseholdMemberRow.customer_id, HouseholdMemberRow.household_id).where(
                HouseholdMemberRow.customer_id.in_(list(customer_ids))
            )
        )
        return {customer_id: household_id for customer_id, household_id in rows}

    async def households_of(self, customer_ids: Sequence[str]) -> list[HouseholdRow]:
        """The households any of these customers belong to, most recently joined first."""
        query = (
            select(HouseholdRow)
            .join(HouseholdMemberRow, HouseholdMemberRow.household_id == HouseholdRow.id)
            .options(selectinload(HouseholdRow.members))
            .where(HouseholdMemberRow.customer_id.in_(customer_ids))
            .order_by(HouseholdMemberRow.joined_at.desc())
        )
        return list((await self.session.scalars(query)).unique())

    def add(self, row: HouseholdRow) -> None:
        self.session.add(row)

    async def delete(self, row: HouseholdRow) -> None:
        await self.session.delete(row)


class ContactRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, organisation_id: str, person_id: str) -> OrganisationContactRow | None:
        return await self.session.get(OrganisationContactRow, (organisation_id, person_id))

    async def of_organisations(self, organisation_ids: Sequence[str]) -> list[OrganisationContactRow]:
        query = (
            select(OrganisationContactRow)
            .where(OrganisationContactRow.organisation_id.in_(organisation_ids))
            .order_by(OrganisationContactRow.created_at, OrganisationContactRow.person_id)
        )
        return list(await self.session.scalars(query))

    async def involving(self, customer_ids: Sequence[str]) -> list[OrganisationContactRow]:
        """Links where these customers are the organisation or the person."""
        query = (
            select(OrganisationContactRow)
            .where(
                or_(
                    OrganisationContactRow.organisation_id.in_(customer_ids),
                    OrganisationContactRow.person_id.in_(customer_ids),
                )
            )
            .order_by(OrganisationContactRow.created_at, OrganisationContactRow.person_id)
        )
        return list(await self.session.scalars(query))

    def add(self, row: OrganisationContactRow) -> None:
        self.session.add(row)

    async def delete(self, row: OrganisationContactRow) -> None:
        await self.session.delete(row)

    async def delete_involving(self, customer_ids: Sequence[str]) -> None:
        await self.session.execute(
            delete(OrganisationContactRow).where(
                or_(
                    OrganisationContactRow.organisation_id.in_(customer_ids),
                    OrganisationContactRow.person_id.in_(customer_ids),
                )
            )
        )
