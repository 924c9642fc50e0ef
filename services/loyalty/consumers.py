"""Events loyalty listens to: purchases earn points, refunds claw them back, customers registered,
merged and erased (penetration's denominator; erasure scrubs memberships, see `privacy`)."""

from __future__ import annotations

from services.loyalty import known_customers, privacy, segments, service
from services.loyalty.rules import service as rules
from shared.contracts.identity import CustomerErased, CustomerMerged, CustomerRegistered, CustomerUnmerged
from shared.contracts.interactions import PurchaseRecorded, PurchaseRefunded, SurveyAnswered
from shared.contracts.segmentation import SegmentEntered, SegmentExited
from shared.events.envelope import CloudEvent
from shared.messaging.consumer import EventConsumer
from shared.uow import UnitOfWork


def register(consumer: EventConsumer) -> None:
    @consumer.on(PurchaseRecorded)
    async def purchase_recorded(uow: UnitOfWork, purchase: PurchaseRecorded, _event: CloudEvent) -> None:
        await service.earn_for_purchase(uow, purchase)

    @consumer.on_many(PurchaseRecorded)
    async def purchases_recorded(
        uow: UnitOfWork, purchases: list[PurchaseRecorded], _events: list[CloudEvent]
    ) -> None:
        await service.earn_for_purchases(uow, purchases)

    @consumer.on(PurchaseRefunded)
    async def purchase_refunded(uow: UnitOfWork, refund: PurchaseRefunded, _event: CloudEvent) -> None:
        await service.claw_back_for_refund(uow, refund)

    @consumer.on(SurveyAnswered)
    async def survey_answered(uow: UnitOfWork, answer: SurveyAnswered, _event: CloudEvent) -> None:
        await rules.survey_answered(uow, answer)

    @consumer.on(CustomerMerged)
    async def customer_merged(uow: UnitOfWork, merged: CustomerMerged, _event: CloudEvent) -> None:
        # The row first: it is the lock a concurrent purchase for the merged id waits on (see resolve).
        await known_customers.merged(uow.session, merged.merged_id, merged.customer_id)
        await service.follow_merge(uow, merged)

    @consumer.on(CustomerUnmerged)
    async def customer_unmerged(uow: UnitOfWork, unmerged: CustomerUnmerged, _event: CloudEvent) -> None:
        await known_customers.unmerged(uow.session, unmerged.restored_id)

    @consumer.on(CustomerRegistered)
    async def customer_registered(uow: UnitOfWork, event: CustomerRegistered, _event: CloudEvent) -> None:
        await known_customers.registered(uow.session, event.customer_id, event.registered_at)

    @consumer.on(CustomerErased)
    async def customer_erased(uow: UnitOfWork, event: CustomerErased, _event: CloudEvent) -> None:
        await privacy.erase_customer(
            uow.session, [event.customer_id, *event.erased_ids], erased_at=event.erased_at
        )

    @consumer.on(SegmentEntered)
    async def segment_entered(uow: UnitOfWork, event: SegmentEntered, _event: CloudEvent) -> None:
        await segments.apply(uow.session, event)

    @consumer.on(SegmentExited)
    async def segment_exited(uow: UnitOfWork, event: SegmentExited, _event: CloudEvent) -> None:
        await segments.apply(uow.session, event)
