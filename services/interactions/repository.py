"""Every query interactions makes on purchases and refunds lives here."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from services.interactions.models import Purchase, RefundRow


def _details() -> list[Any]:
    """A purchase is always read with its lines and its refunds (with their lines): relationships are
    `lazy="raise"`, so nothing is fetched behind the caller's back."""
    return [
        selectinload(Purchase.lines),
        selectinload(Purchase.refunds).selectinload(RefundRow.lines),
    ]


class PurchaseRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, purchase_id: str, *, for_update: bool = False) -> Purchase | None:
        """The purchase with its details. `for_update` locks its row until the transaction ends
        (PostgreSQL; SQLite transactions are serialised already), so that refunds and payment status
        changes of one purchase happen one after the other and always see each other."""
        statement = select(Purchase).options(*_details()).where(Purchase.id == purchase_id)
        if for_update:
            statement = statement.with_for_update(of=Purchase)
        return await self.session.scalar(statement)

    async def get_by_external_id(self, source_system: str, external_id: str) -> Purchase | None:
        return await self.session.scalar(
            select(Purchase)
            .options(*_details())
            .where(Purchase.source_system == source_system, Purchase.external_id == external_id)
        )

    async def list_for_customer(self, customer_id: str, *, limit: int) -> list[Purchase]:
        result = await self.session.scalars(
            select(Purchase)
            .options(*_details())
            .where(Purchase.customer_id == customer_id)
            .order_by(Purchase.occurred_at.desc(), Purchase.id.desc())
            .limit(limit)
        )
        return list(result)

    def add(self, purchase: Purchase) -> None:
        self.session.add(purchase)


class RefundRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get_by_key(self, source_system: str, idempotency_key: str) -> RefundRow | None:
        return await self.session.scalar(
            select(RefundRow)
            .options(selectinload(RefundRow.lines))
            .where(RefundRow.source_system == source_system, RefundRow.idempotency_key == idempotency_key)
        )

    def add(self, refund: RefundRow) -> None:
        self.session.add(refund)
