"""The customers loyalty knows of, from identity's events: the denominator of program penetration.

`customer_registered` adds one; `customer_erased` and `customer_merged` count one out (erased, or
absorbed into another customer), `customer_unmerged` counts a split-off customer back in. Every
handler is an upsert that only ever sets facts, so redelivered or out-of-order events leave the same
row (an erasure is never undone by a late registration)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from services.loyalty.tables import KnownCustomer


def _insert(session: AsyncSession) -> Any:
    dialect = session.bind.dialect.name if session.bind is not None else "sqlite"
    return postgresql.insert if dialect == "postgresql" else sqlite.insert


async def _upsert(session: AsyncSession, customer_id: str, **values: Any) -> None:
    statement = _insert(session)(KnownCustomer).values(customer_id=customer_id, **values)
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=["customer_id"], set_={k: statement.excluded[k] for k in values}
        )
        if values
        else statement.on_conflict_do_nothing()
    )


async def registered(session: AsyncSession, customer_id: str, registered_at: datetime) -> None:
    statement = _insert(session)(KnownCustomer).values(customer_id=customer_id, registered_at=registered_at)
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=["customer_id"],
            set_={"registered_at": statement.excluded.registered_at},
            where=KnownCustomer.registered_at.is_(None),
        )
    )


async def erased(session: AsyncSession, customer_ids: list[str], erased_at: datetime) -> None:
    for customer_id in dict.fromkeys(customer_ids):
        statement = _insert(session)(KnownCustomer).values(customer_id=customer_id, erased_at=erased_at)
        await session.execute(
            statement.on_conflict_do_update(
                index_elements=["customer_id"],
                set_={"erased_at": statement.excluded.erased_at},
                where=KnownCustomer.erased_at.is_(None),
            )
        )


async def merged(session: AsyncSession, merged_id: str, into: str) -> None:
    await _upsert(session, merged_id, merged_into=into)


async def unmerged(session: AsyncSession, restored_id: str) -> None:
    await session.execute(
        update(KnownCustomer).where(KnownCustomer.customer_id == restored_id).values(merged_into=None)
    )


async def resolve(session: AsyncSession, customer_id: str, *, lock: bool = False) -> str:
    """The customer an id stands for now: a merged-away id resolves to its survivor (following
    chains). Events are ordered per topic only, so a purchase can arrive after its customer's merge.

    `lock=True` (earning) makes the answer hold until the transaction ends: the id's row is created if
    missing and locked (`FOR UPDATE`), and the merge handler writes the same row before it moves
    memberships. So a purchase and a merge handled at the same moment by two replicas serialise: the
    purchase either sees the merge and earns for the survivor, or commits first and its membership
    is then moved by the merge — never points left on a merged-away customer."""
    seen = {customer_id}
    current = customer_id
    for step in range(16):
        query = select(KnownCustomer.customer_id, KnownCustomer.merged_into).where(
            KnownCustomer.customer_id == current
        )
        row = (await session.execute(query.with_for_update() if lock else query)).first()
        if row is None and lock and step == 0:
            # Not known yet (the purchase came before the registration): create the row to lock it. The
            # common case — a known customer — costs one statement, the locking read.
            await session.execute(
                _insert(session)(KnownCustomer).values(customer_id=current).on_conflict_do_nothing()
            )
            row = (await session.execute(query.with_for_update())).first()
        into = row.merged_into if row is not None else None
        if into is None or into in seen:
            return current
        seen.add(into)
        current = into
    return current


async def resolve_many(session: AsyncSession, customer_ids: Iterable[str]) -> dict[str, str]:
    """`resolve(..., lock=True)` for many ids: the known, unmerged ones (the common case) locked in one
    statement, in id order; the others (new or merged away) one by one as `resolve` does."""
    ids = sorted(set(customer_ids))
    rows = await session.execute(
        select(KnownCustomer.customer_id, KnownCustomer.merged_into)
        .where(KnownCustomer.customer_id.in_(ids))
        .order_by(KnownCustomer.customer_id)
        .with_for_update()
    )
    known = {customer_id: into for customer_id, into in rows}
    resolved: dict[str, str] = {}
    for customer_id in ids:
        if customer_id in known and known[customer_id] is None:
            resolved[customer_id] = customer_id
        else:
            resolved[customer_id] = await resolve(session, customer_id, lock=True)
    return resolved
