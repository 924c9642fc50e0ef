"""Following identity's decisions in every table that holds a customer id: merges, unmerges, erasure.

A table takes part by having both `customer_id` (whose contact it is today) and `origin_customer_id`
(whose it was when recorded): a merge moves the absorbed customer's rows to the survivor, an unmerge
moves back the rows recorded for the restored customer (and for the customers merged into it
before). Erasure replaces the personal columns registered with `personal(...)` — free text, messages,
addresses — and keeps the facts (amounts, dates, channels) that aggregate figures need, under the
customer's id, which no longer leads to a person once identity has erased the profile.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from pydantic_core import to_jsonable_python
from sqlalchemy import ColumnElement, Table, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.interactions.models import KnownCustomer, metadata

ERASED_TEXT = "[erased]"
_PERSONAL: dict[str, dict[str, Any]] = {}


def personal(table: str, replacements: dict[str, Any]) -> None:
    """Declare `table`'s personal columns and what erasure writes over them (None, {}, "[erased]")."""
    _PERSONAL.setdefault(table, {}).update(replacements)


personal("interactions", {"text": None, "attributes": {}, "summary": None, "erased": True})


def customer_tables() -> list[Table]:
    """Every table holding both `customer_id` and `origin_customer_id`."""
    return [t for t in metadata.sorted_tables if "customer_id" in t.c and "origin_customer_id" in t.c]


async def follow_merge(session: AsyncSession, absorbed_id: str, survivor_id: str) -> None:
    """The absorbed customer's rows (and those of customers merged into it before) now belong to the
    survivor."""
    for table in customer_tables():
        await session.execute(
            update(table).where(table.c.customer_id == absorbed_id).values(customer_id=survivor_id)
        )


async def follow_unmerge(session: AsyncSession, restored_id: str) -> None:
    """Rows recorded for the restored customer, or for customers merged into it, go back to it."""
    members = await _merged_into(session, restored_id)
    for table in customer_tables():
        await session.execute(
            update(table)
            .where(table.c.origin_customer_id.in_(sorted(members)))
            .values(customer_id=restored_id)
        )


async def _merged_into(session: AsyncSession, root: str) -> set[str]:
    """`root` and every customer whose merge chain leads to it (as the local copy knows it)."""
    members = {root}
    frontier = {root}
    while frontier:
        rows = await session.scalars(
            select(KnownCustomer.customer_id).where(KnownCustomer.merged_into.in_(sorted(frontier)))
        )
        frontier = set(rows) - members
        members |= frontier
    return members


async def erase(session: AsyncSession, customer_ids: Collection[str]) -> None:
    """Overwrite the personal columns of every row of those customers."""
    ids = sorted(customer_ids)
    for table in metadata.sorted_tables:
        replacements = _PERSONAL.get(table.name)
        if not replacements or "customer_id" not in table.c:
            continue
        condition: ColumnElement[bool] = table.c.customer_id.in_(ids)
        if "origin_customer_id" in table.c:
            condition = or_(condition, table.c.origin_customer_id.in_(ids))
        await session.execute(update(table).where(condition).values(**replacements))


async def export(session: AsyncSession, customer_id: str) -> dict[str, list[dict[str, Any]]]:
    """Right of access: every row of every table that holds this customer id (recorded for it, or
    belonging to it now), by table — complete by construction as tables are added."""
    found: dict[str, list[dict[str, Any]]] = {}
    for table in metadata.sorted_tables:
        if "customer_id" not in table.c or table.name == "known_customers":
            continue
        condition: ColumnElement[bool] = table.c.customer_id == customer_id
        if "origin_customer_id" in table.c:
            condition = or_(condition, table.c.origin_customer_id == customer_id)
        rows = (await session.execute(select(table).where(condition))).mappings().all()
        if rows:
            found[table.name] = [to_jsonable_python(dict(row)) for row in rows]
    return found
