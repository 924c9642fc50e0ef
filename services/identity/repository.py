"""Every query identity makes lives here."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from services.identity.models import CustomerRow


class CustomerRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, customer_id: str) -> CustomerRow | None:
        return await self.session.get(CustomerRow, customer_id)

    def add(self, row: CustomerRow) -> None:
        self.session.add(row)
