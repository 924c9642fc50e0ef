"""What identity's sub-packages (consents, attributes, households, notes) need to know about customers.

The `customers` table belongs to identity's core: these read-only lookups are the only queries the
sub-packages make on it. A golden record's data is the union over several customer ids (the
survivor and the ids merged into it); `member_ids` resolves one id to all of them, and the route
dependencies below do it for a path parameter, so use cases receive `customer_ids` with the golden
record (the survivor, where writes go) first. `RequestActor` tells routes who is acting, for the
audit fields.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Annotated

from fastapi import Depends, Path
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.identity.models import CustomerRow
from shared.context import actor_var
from shared.errors import Gone, NotFound
from shared.runtime import RuntimeDep


async def member_ids(session: AsyncSession, customer_id: str) -> list[str]:
    """Every customer id whose data makes up `customer_id`'s golden record, the survivor first."""
    from services.identity.repository import golden_member_ids

    return await golden_member_ids(session, customer_id)  # the survivor first: use cases write there


class CustomerGone(Gone):
    """The customer was erased: what is left may be read (proof of consent choices), not added to."""


async def customer_kinds(
    session: AsyncSession, customer_ids: Collection[str], *, live_only: bool = False
) -> dict[str, str]:
    """The kind (person or organisation) of each of these customers that exists (and, with
    `live_only`, was not erased)."""
    if not customer_ids:
        return {}
    query = select(CustomerRow.id, CustomerRow.kind).where(CustomerRow.id.in_(list(customer_ids)))
    if live_only:
        query = query.where(CustomerRow.erased_at.is_(None))
    return {customer_id: kind for customer_id, kind in await session.execute(query)}


async def require_customer(
    session: AsyncSession, customer_id: str, *, for_update: bool = False, writable: bool = False
) -> str:
    """The customer's kind; `NotFound` (404) when no such customer exists, and `CustomerGone` (410)
    when `writable` is asked of an erased one.

    `for_update` locks the customer's row until the transaction ends (PostgreSQL; SQLite transactions
    are serial anyway), so that writers of one customer's data take turns even when the rows they
    will write do not exist yet."""
    query = select(CustomerRow.kind, CustomerRow.erased_at).where(CustomerRow.id == customer_id)
    if for_update:
        query = query.with_for_update()
    row = (await session.execute(query)).first()
    if row is None:
        raise NotFound(f"customer {customer_id} does not exist", customer_id=customer_id)
    kind, erased_at = row
    if writable and erased_at is not None:
        raise CustomerGone(f"customer {customer_id} was erased", customer_id=customer_id)
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


async def _request_actor() -> str | None:
    return actor_var.get()


RequestActor = Annotated[str | None, Depends(_request_actor)]
"""Route dependency: who is acting (`X-Actor` until the gateway authenticates and sets it), if known."""
