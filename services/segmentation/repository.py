"""Every query segmentation makes lives here."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from services.segmentation.models import CustomerFeatures, CustomerSpend, PurchaseFact


class FeatureRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        dialect = session.bind.dialect.name if session.bind is not None else "sqlite"
        self._insert: Any = postgresql.insert if dialect == "postgresql" else sqlite.insert

    async def ensure_customer(self, customer_id: str) -> None:
        await self.session.execute(
            self._insert(CustomerFeatures)
            .values(customer_id=customer_id, purchase_count=0, updated_at=datetime.now(UTC))
            .on_conflict_do_nothing()
        )

    async def set_registered(self, customer_id: str, registered_at: datetime) -> None:
        await self.ensure_customer(customer_id)
        await self.session.execute(
            update(CustomerFeatures)
            .where(CustomerFeatures.customer_id == customer_id)
            .values(registered_at=registered_at, updated_at=datetime.now(UTC))
        )

    async def add_purchase_fact(self, fact: dict[str, Any]) -> bool:
        """Store a purchase once; False if it was already counted."""
        result = await self.session.execute(
            self._insert(PurchaseFact)
            .values(**fact)
            .on_conflict_do_nothing()
            .returning(PurchaseFact.purchase_id)
        )
        return result.first() is not None

    async def count_purchase(
        self, customer_id: str, occurred_at: datetime, currency: str, total_minor: int
    ) -> None:
        await self.ensure_customer(customer_id)
        features = await self.session.get(CustomerFeatures, customer_id, with_for_update=True)
        assert features is not None
        features.purchase_count += 1
        if features.first_purchase_at is None or occurred_at < features.first_purchase_at:
            features.first_purchase_at = occurred_at
        if features.last_purchase_at is None or occurred_at > features.last_purchase_at:
            features.last_purchase_at = occurred_at
        features.updated_at = datetime.now(UTC)
        stmt = self._insert(CustomerSpend).values(
            customer_id=customer_id, currency=currency, purchase_count=1, total_minor=total_minor
        )
        await self.session.execute(
            stmt.on_conflict_do_update(
                index_elements=[CustomerSpend.customer_id, CustomerSpend.currency],
                set_={
                    "purchase_count": CustomerSpend.purchase_count + 1,
                    "total_minor": CustomerSpend.total_minor + total_minor,
                },
            )
        )
        await self.session.flush()

    async def features(self, customer_id: str) -> CustomerFeatures | None:
        return await self.session.get(CustomerFeatures, customer_id)

    async def spend(self, customer_id: str) -> list[CustomerSpend]:
        result = await self.session.scalars(
            select(CustomerSpend)
            .where(CustomerSpend.customer_id == customer_id)
            .order_by(CustomerSpend.currency)
        )
        return list(result)
