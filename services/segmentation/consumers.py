"""Events segmentation listens to: registrations and purchases."""

from __future__ import annotations

from services.segmentation import service
from shared.contracts.identity import CustomerRegistered
from shared.contracts.interactions import PurchaseRecorded
from shared.events.envelope import CloudEvent
from shared.messaging.consumer import EventConsumer
from shared.uow import UnitOfWork


def register(consumer: EventConsumer) -> None:
    @consumer.on(CustomerRegistered)
    async def customer_registered(uow: UnitOfWork, event: CustomerRegistered, _envelope: CloudEvent) -> None:
        await service.on_customer_registered(uow, event)

    @consumer.on(PurchaseRecorded)
    async def purchase_recorded(uow: UnitOfWork, purchase: PurchaseRecorded, _envelope: CloudEvent) -> None:
        await service.on_purchase_recorded(uow, purchase)
