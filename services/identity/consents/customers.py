"""What identity's sub-packages (consents, attributes, households, notes) need to know about customers.

The `customers` table belongs to identity's core: these read-only lookups are the only queries the
sub-packages make on it. A golden record's data is the union over several customer ids (the
survivor and the ids merged into it); `member_ids` resolves one id to all of them, and the route
dependencies below do it for a path parameter, so use cases receive `customer_ids` with the golden
record (the survivor, where writes go) first.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Annotated

from fastapi import Depends, Path
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.identity.models import CustomerRow
from shared.errors import NotFound
from shared.runtime import RuntimeDep


async def member_ids(session: AsyncSession, customer_id: str) -> list[str]:
    """Every customer id whose data makes up `customer_id`'s golden record, the survivor first."""
    # TODO(integration): return await services.identity.repository.golden_member_ids(session, customer_id)
    # (keeping the survivor first: use cases write to customer_ids[0]).
    del session
    return [customer_id]


async def customer_kinds(session: AsyncSession, customer_ids: Collection[str]) -> dict[str, str]:
    """The kind (person or organisation) of each of these customers that exists."""
    if not customer_ids:
        return {}
    rows = await session.execute(
        select(CustomerRow.id, CustomerRow.kind).where(CustomerRow.id.in_(list(customer_ids)))
    )
    return {customer_id: kind for customer_id, kind in rows}


async def require_customer(session: AsyncSession, customer_id: str, *, for_update: bool = False) -> str:
    """The customer's kind; `NotFound` (404) when no such customer exists.

    `for_update` locks the customer's row until the transaction ends (PostgreSQL; SQLite transactions
    are serial anyway), so that writers of one customer's data take turns even when the rows they
    will write do not exist yet."""
    query = select(CustomerRow.kind).where(CustomerRow.id == customer_id)
    if for_update:
        query = query.with_for_update()
    kind = await session.scalar(query)
    if kind is None:
        raise NotFound(f"customer {customer_id} does not exist", customer_id=customer_id)
    return kind


async def _golden_customer(
    customer_id: Annotated[str, Path(description="A customer id; merged ids resolve to their golden record")],
    runtime: RuntimeDep,
) -> list[str]:
    async with runtime.uow() as uow:
        return await member_ids(uow.session, customer_id)


async def _golden_organisation(
    organisation_id: Annotated[str, Path(description="The organisation customer's id")],
    runtime: RuntimeDep,
) -> list[str]:
    async with runtime.uow() as uow:
        return await member_ids(uow.session, organisation_id)


CustomerIds = Annotated[list[str], Depends(_golden_customer)]
"""Route dependency: the `{customer_id}` path parameter resolved to its golden record's ids."""

OrganisationIds = Annotated[list[str], Depends(_golden_organisation)]
"""Route dependency: the `{organisation_id}` path parameter resolved to its golden record's ids."""
