"""Who the customers are, as far as interactions needs to know: does this customer id exist?

The answer comes from the local copy fed by identity's `customer_registered` events; when an
event has not arrived yet (a purchase posted a moment after the customer was created), identity is
asked over HTTP and the answer is remembered. Only identity decides who exists.
"""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from services.interactions.models import KnownCustomer
from shared.context import request_id_var
from shared.errors import ServiceUnavailable


class CustomerDirectory:
    def __init__(self, identity: httpx.AsyncClient) -> None:
        self.identity = identity

    async def exists(self, session: AsyncSession, customer_id: str) -> bool:
        known = await session.scalar(
            select(KnownCustomer.customer_id).where(KnownCustomer.customer_id == customer_id)
        )
        if known is not None:
            return True
        headers = {"x-request-id": request_id_var.get() or ""}
        try:
            response = await self.identity.get(f"/customers/{customer_id}", headers=headers)
        except httpx.HTTPError as exc:
            raise ServiceUnavailable(f"identity service unreachable: {exc.__class__.__name__}") from exc
        if response.status_code == 404:
            return False
        if response.status_code != 200:
            raise ServiceUnavailable(f"identity service answered {response.status_code}")
        await remember(session, customer_id)
        return True


async def remember(session: AsyncSession, customer_id: str) -> None:
    dialect = session.bind.dialect.name if session.bind is not None else "sqlite"
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    await session.execute(
        insert(KnownCustomer)
        .values(customer_id=customer_id, learned_at=datetime.now(UTC))
        .on_conflict_do_nothing()
    )
