"""Every query interactions makes lives here."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from services.interactions.models import Purchase


class PurchaseRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, purchase_id: str) -> Purchase | None:
        return await self.session.scalar(
            select(Purchase).options(selectinload(Purchase.lines)).where(Purchase.id == purchase_id)
        )

    async def get_by_external_id(self, source_system: str, external_id: str) -> Purchase | None:
        return await self.session.scalar(
            select(Purchase)
            .options(selectinload(Purchase.lines))
            .where(Purchase.source_system == source_system, Purchase.external_id == external_id)
        )

    async def list_for_customer(self, customer_id: str, *, limit: int) -> list[Purchase]:
        result = await self.session.scalars(
            select(Purchase)
            .options(selectinload(Purchase.lines))
            .where(Purchase.customer_id == customer_id)
            .order_by(Purchase.occurred_at.desc(), Purchase.id.desc())
            .limit(limit)
        )
        return list(result)

    def add(self, purchase: Purchase) -> None:
        self.session.add(purchase)
