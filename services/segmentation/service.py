"""Segmentation's use cases: keep each customer's features current from events."""

from __future__ import annotations

from services.segmentation.repository import FeatureRepository
from services.segmentation.schemas import FeaturesOut, SpendOut
from shared.contracts.identity import CustomerRegistered
from shared.contracts.interactions import PurchaseRecorded
from shared.errors import NotFound
from shared.uow import UnitOfWork


async def on_customer_registered(uow: UnitOfWork, event: CustomerRegistered) -> None:
    await FeatureRepository(uow.session).set_registered(event.customer_id, event.registered_at)


async def on_purchase_recorded(uow: UnitOfWork, purchase: PurchaseRecorded) -> None:
    """Count a purchase once (keyed on its id), even for a customer we have not heard of yet."""
    repo = FeatureRepository(uow.session)
    counted_now = await repo.add_purchase_fact(
        {
            "purchase_id": purchase.purchase_id,
            "customer_id": purchase.customer_id,
            "occurred_at": purchase.occurred_at,
            "currency": purchase.currency,
            "total_minor": purchase.total_minor,
            "channel": purchase.channel,
        }
    )
    if counted_now:
        await repo.count_purchase(
            purchase.customer_id, purchase.occurred_at, purchase.currency, purchase.total_minor
        )


async def features(uow: UnitOfWork, customer_id: str) -> FeaturesOut:
    async with uow:
        repo = FeatureRepository(uow.session)
        row = await repo.features(customer_id)
        if row is None:
            raise NotFound(f"no features for customer {customer_id} yet", customer_id=customer_id)
        spend = await repo.spend(customer_id)
    return FeaturesOut(
        customer_id=row.customer_id,
        registered_at=row.registered_at,
        first_purchase_at=row.first_purchase_at,
        last_purchase_at=row.last_purchase_at,
        purchase_count=row.purchase_count,
        spend=[
            SpendOut(currency=s.currency, purchase_count=s.purchase_count, total_minor=s.total_minor)
            for s in spend
        ],
    )
