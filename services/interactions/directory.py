"""Who the customers are, as far as interactions needs to know: does this id exist, and is it current?

The answer comes from the local copy fed by identity's events (registered, merged, unmerged,
erased); when an event has not arrived yet (a purchase posted a moment after the customer was
created), identity is asked over HTTP and the answer is remembered. Only identity decides who
exists: a merged id resolves to its survivor, an erased customer takes no new records.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx
from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from services.interactions.models import KnownCustomer
from shared.context import request_id_var
from shared.errors import InvalidInput, ServiceUnavailable


@dataclass(frozen=True, slots=True)
class Lookup:
    customer_id: str  # the current id (the survivor, if the asked id was merged)
    erased: bool = False


class CustomerDirectory:
    def __init__(self, identity: httpx.AsyncClient) -> None:
        self.identity = identity

    async def lookup(self, session: AsyncSession, customer_id: str) -> Lookup | None:
        current = customer_id
        for _ in range(32):
            known = await _known(session, current)
            if known is None:
                break
            if known.erased_at is not None:
                return Lookup(current, erased=True)
            if known.merged_into is None:
                return Lookup(current)
            current = known.merged_into
        headers = {"x-request-id": request_id_var.get() or ""}
        try:
            response = await self.identity.get(f"/customers/{quote(current, safe='')}", headers=headers)
        except httpx.HTTPError as exc:
            raise ServiceUnavailable(f"identity service unreachable: {exc.__class__.__name__}") from exc
        if response.status_code == 404:
            return None
        if response.status_code == 410:
            return Lookup(current, erased=True)
        if response.status_code != 200:
            raise ServiceUnavailable(f"identity service answered {response.status_code}")
        resolved = str(response.json()["id"])
        await remember(session, resolved)
        return Lookup(resolved)

    async def by_identifier(self, session: AsyncSession, kind: str, value: str, field: str) -> Lookup:
        """The one customer identity knows by this e-mail, phone or card; `field` names the input
        in the error when there is none, or more than one."""
        headers = {"x-request-id": request_id_var.get() or ""}
        try:
            response = await self.identity.get(
                "/customers", params={kind: value, "limit": 2}, headers=headers
            )
        except httpx.HTTPError as exc:
            raise ServiceUnavailable(f"identity service unreachable: {exc.__class__.__name__}") from exc
        if response.status_code == 422:
            raise InvalidInput(field, f"not a valid {kind}")
        if response.status_code != 200:
            raise ServiceUnavailable(f"identity service answered {response.status_code}")
        items = response.json().get("items", [])
        if not items:
            raise InvalidInput(field, f"no customer has this {kind}")
        if len(items) > 1:
            raise InvalidInput(field, f"several customers share this {kind}: give customer_id")
        resolved = str(items[0]["id"])
        await remember(session, resolved)
        return Lookup(resolved)

    async def known_roots(self, session: AsyncSession, customer_ids: list[str]) -> dict[str, Lookup]:
        """What the local copy says of many ids at once (merges followed): ids it does not know are
        missing from the answer (ask `lookup` for those)."""
        found: dict[str, Lookup] = {}
        rows = {
            row.customer_id: row
            for row in await session.execute(
                _KNOWN.where(KnownCustomer.customer_id.in_(sorted(set(customer_ids))))
            )
        }
        for customer_id in set(customer_ids):
            current, row = customer_id, rows.get(customer_id)
            for _ in range(32):
                if row is None:
                    break
                if row.erased_at is not None:
                    found[customer_id] = Lookup(current, erased=True)
                    break
                if row.merged_into is None:
                    found[customer_id] = Lookup(current)
                    break
                current = row.merged_into
                row = rows.get(current) or await _known(session, current)
        return found


# Columns, not the ORM entity: a lookup sits on every purchase and contact recorded.
_KNOWN = select(KnownCustomer.customer_id, KnownCustomer.merged_into, KnownCustomer.erased_at)


async def _known(session: AsyncSession, customer_id: str) -> Any:
    return (await session.execute(_KNOWN.where(KnownCustomer.customer_id == customer_id))).first()


async def remember(session: AsyncSession, customer_id: str) -> None:
    dialect = session.bind.dialect.name if session.bind is not None else "sqlite"
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    await session.execute(
        insert(KnownCustomer)
        .values(customer_id=customer_id, learned_at=datetime.now(UTC))
        .on_conflict_do_nothing()
    )


async def merged(session: AsyncSession, merged_id: str, survivor_id: str) -> None:
    await remember(session, merged_id)
    await remember(session, survivor_id)
    await session.execute(
        update(KnownCustomer).where(KnownCustomer.customer_id == merged_id).values(merged_into=survivor_id)
    )


async def unmerged(session: AsyncSession, restored_id: str) -> None:
    await remember(session, restored_id)
    await session.execute(
        update(KnownCustomer).where(KnownCustomer.customer_id == restored_id).values(merged_into=None)
    )


async def erased(session: AsyncSession, customer_ids: list[str], at: datetime) -> None:
    for customer_id in customer_ids:
        await remember(session, customer_id)
    await session.execute(
        update(KnownCustomer).where(KnownCustomer.customer_id.in_(customer_ids)).values(erased_at=at)
    )
