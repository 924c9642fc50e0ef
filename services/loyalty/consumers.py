"""Events loyalty listens to: purchases earn points, refunds claw them back."""

from __future__ import annotations

from services.loyalty import segments, service
from shared.contracts.identity import CustomerMerged
from shared.contracts.interactions import PurchaseRecorded, PurchaseRefunded
from shared.contracts.segmentation import SegmentEntered, SegmentExited
from shared.events.envelope import CloudEvent
from shared.messaging.consumer import EventConsumer
from shared.uow import UnitOfWork


def register(consumer: EventConsumer) -> None:
    @consumer.on(PurchaseRecorded)
    async def purchase_recorded(uow: UnitOfWork, purchase: PurchaseRecorded, _event: CloudEvent) -> None:
        await service.earn_for_purchase(uow, purchase)

    @consumer.on(PurchaseRefunded)
    async def purchase_refunded(uow: UnitOfWork, refund: PurchaseRefunded, _event: CloudEvent) -> None:
        await service.claw_back_for_refund(uow, refund)

    @consumer.on(CustomerMerged)
    async def customer_merged(uow: UnitOfWork, merged: CustomerMerged, _event: CloudEvent) -> None:
        await service.follow_merge(uow, merged)

    @consumer.on(SegmentEntered)
    async def segment_entered(uow: UnitOfWork, event: SegmentEntered, _event: CloudEvent) -> None:
        await segments.apply(uow.session, event)

    @consumer.on(SegmentExited)
    async def segment_exited(uow: UnitOfWork, event: SegmentExited, _event: CloudEvent) -> None:
        await segments.apply(uow.session, event)
