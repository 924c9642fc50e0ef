"""Every query on communications and their delivery history lives here."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from services.interactions.communications.models import CommunicationRow, DeliveryEventRow


class CommunicationRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, communication_id: str, *, for_update: bool = False) -> CommunicationRow | None:
        """With its delivery history. `for_update` locks the row (PostgreSQL) so that delivery events
        of one message arriving together are applied one after the other."""
        statement = (
            select(CommunicationRow)
            .options(selectinload(CommunicationRow.deliveries))
            .where(CommunicationRow.id == communication_id)
        )
        if for_update:
            statement = statement.with_for_update(of=CommunicationRow)
        return await self.session.scalar(statement)

    async def get_by_key(self, source_system: str, idempotency_key: str) -> CommunicationRow | None:
        return await self.session.scalar(
            select(CommunicationRow)
            .options(selectinload(CommunicationRow.deliveries))
            .where(
                CommunicationRow.source_system == source_system,
                CommunicationRow.idempotency_key == idempotency_key,
            )
        )

    async def delivery_by_key(self, communication_id: str, idempotency_key: str) -> DeliveryEventRow | None:
        return await self.session.scalar(
            select(DeliveryEventRow).where(
                DeliveryEventRow.communication_id == communication_id,
                DeliveryEventRow.idempotency_key == idempotency_key,
            )
        )

    async def list_for_customer(
        self,
        customer_id: str,
        *,
        statuses: list[str],
        channels: list[str],
        campaign_id: str | None,
        limit: int,
    ) -> list[CommunicationRow]:
        statement = (
            select(CommunicationRow)
            .options(selectinload(CommunicationRow.deliveries))
            .where(CommunicationRow.customer_id == customer_id)
        )
        if statuses:
            statement = statement.where(CommunicationRow.status.in_(statuses))
        if channels:
            statement = statement.where(CommunicationRow.channel.in_(channels))
        if campaign_id is not None:
            statement = statement.where(CommunicationRow.campaign_id == campaign_id)
        result = await self.session.scalars(
            statement.order_by(CommunicationRow.sent_at.desc(), CommunicationRow.id.desc()).limit(limit)
        )
        return list(result)

    def add(self, row: CommunicationRow) -> None:
        self.session.add(row)
