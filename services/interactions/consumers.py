"""Events interactions listens to: identity's registrations, to know which customers exist."""

from __future__ import annotations

from services.interactions.directory import remember
from shared.contracts.identity import CustomerRegistered
from shared.events.envelope import CloudEvent
from shared.messaging.consumer import EventConsumer
from shared.uow import UnitOfWork


def register(consumer: EventConsumer) -> None:
    @consumer.on(CustomerRegistered)
    async def customer_registered(uow: UnitOfWork, event: CustomerRegistered, _envelope: CloudEvent) -> None:
        await remember(uow.session, event.customer_id)
