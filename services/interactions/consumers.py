"""Events interactions listens to: identity's customer lifecycle, to know which customers exist."""

from __future__ import annotations

from services.interactions import directory, privacy
from shared.contracts.identity import CustomerErased, CustomerMerged, CustomerRegistered, CustomerUnmerged
from shared.events.envelope import CloudEvent
from shared.messaging.consumer import EventConsumer
from shared.uow import UnitOfWork


def register(consumer: EventConsumer) -> None:
    @consumer.on(CustomerRegistered)
    async def customer_registered(uow: UnitOfWork, event: CustomerRegistered, _envelope: CloudEvent) -> None:
        await directory.remember(uow.session, event.customer_id)

    @consumer.on(CustomerMerged)
    async def customer_merged(uow: UnitOfWork, event: CustomerMerged, _envelope: CloudEvent) -> None:
        await directory.merged(uow.session, event.merged_id, event.customer_id)
        await privacy.follow_merge(uow.session, event.merged_id, event.customer_id)

    @consumer.on(CustomerUnmerged)
    async def customer_unmerged(uow: UnitOfWork, event: CustomerUnmerged, _envelope: CloudEvent) -> None:
        await directory.unmerged(uow.session, event.restored_id)
        await privacy.follow_unmerge(uow.session, event.restored_id)

    @consumer.on(CustomerErased)
    async def customer_erased(uow: UnitOfWork, event: CustomerErased, _envelope: CloudEvent) -> None:
        await directory.erased(uow.session, event.erased_ids, event.erased_at)
        await privacy.erase(uow.session, event.erased_ids)
