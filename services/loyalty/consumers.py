"""Events loyalty listens to: purchases earn points."""

from __future__ import annotations

from services.loyalty import service
from shared.contracts.interactions import PurchaseRecorded
from shared.events.envelope import CloudEvent
from shared.messaging.consumer import EventConsumer
from shared.uow import UnitOfWork


def register(consumer: EventConsumer) -> None:
    @consumer.on(PurchaseRecorded)
    async def purchase_recorded(uow: UnitOfWork, purchase: PurchaseRecorded, _event: CloudEvent) -> None:
        await service.earn_for_purchase(uow, purchase)
