"""Interactions' use cases."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy.exc import IntegrityError

from services.interactions import timeline
from services.interactions.directory import CustomerDirectory
from services.interactions.domain import Direction, InteractionKind, format_money, order_total
from services.interactions.models import InteractionRow, Purchase, PurchaseLineRow
from services.interactions.repository import PurchaseRepository
from services.interactions.schemas import PurchaseCreate
from shared.contracts.interactions import PurchaseLine, PurchaseRecorded
from shared.errors import InvalidInput, NotFound
from shared.uow import UnitOfWork


async def record_purchase(
    uow: UnitOfWork, directory: CustomerDirectory, data: PurchaseCreate
) -> tuple[Purchase, bool]:
    """Store a purchase and publish `purchase_recorded`. Returns (purchase, created); a repeat of the same
    external id returns the purchase recorded the first time."""
    async with uow:
        repo = PurchaseRepository(uow.session)
        if data.external_id is not None:
            existing = await repo.get_by_external_id(data.source_system, data.external_id)
            if existing is not None:
                return existing, False
        found = await directory.lookup(uow.session, data.customer_id)
        if found is None:
            raise InvalidInput("body.customer_id", f"unknown customer {data.customer_id}")
        if found.erased:
            raise InvalidInput("body.customer_id", f"customer {data.customer_id} was erased")
        customer_id = found.customer_id
        now = datetime.now(UTC)
        total = order_total([(line.quantity, line.unit_price_minor) for line in data.lines])
        purchase = Purchase(
            id=str(uuid.uuid4()),
            customer_id=customer_id,
            origin_customer_id=data.customer_id,
            external_id=data.external_id,
            source_system=data.source_system,
            channel=data.channel.value,
            occurred_at=data.occurred_at,
            currency=data.currency,
            total_minor=total,
            created_at=now,
            lines=[
                PurchaseLineRow(
                    line_no=i,
                    sku=line.sku,
                    category=line.category,
                    quantity=line.quantity,
                    unit_price_minor=line.unit_price_minor,
                )
                for i, line in enumerate(data.lines, start=1)
            ],
        )
        repo.add(purchase)
        uow.session.add(
            timeline.new_interaction(
                customer_id=customer_id,
                origin_customer_id=data.customer_id,
                kind=InteractionKind.PURCHASE.value,
                channel=purchase.channel,
                direction=Direction.INBOUND.value,
                occurred_at=purchase.occurred_at,
                source_system=purchase.source_system,
                summary=f"Purchase of {sum(line.quantity for line in data.lines)} item(s), "
                f"{format_money(total, purchase.currency)}",
                subject_type="purchase",
                subject_id=purchase.id,
            )
        )
        try:
            await uow.session.flush()
        except IntegrityError:
            # The same external id, recorded concurrently by another request: that one won.
            await uow.rollback()
            if data.external_id is not None:
                existing = await repo.get_by_external_id(data.source_system, data.external_id)
                if existing is not None:
                    return existing, False
            raise
        await uow.publish(
            PurchaseRecorded(
                purchase_id=purchase.id,
                customer_id=purchase.customer_id,
                external_id=purchase.external_id,
                channel=purchase.channel,
                occurred_at=purchase.occurred_at,
                currency=purchase.currency,
                total_minor=total,
                lines=[PurchaseLine(**line.model_dump()) for line in data.lines],
            )
        )
        await uow.commit()
    return purchase, True


async def get_purchase(uow: UnitOfWork, purchase_id: str) -> Purchase:
    async with uow:
        purchase = await PurchaseRepository(uow.session).get(purchase_id)
    if purchase is None:
        raise NotFound(f"purchase {purchase_id} does not exist", purchase_id=purchase_id)
    return purchase


async def list_customer_purchases(uow: UnitOfWork, customer_id: str, limit: int) -> list[Purchase]:
    async with uow:
        return await PurchaseRepository(uow.session).list_for_customer(customer_id, limit=limit)


async def list_customer_interactions(uow: UnitOfWork, customer_id: str) -> list[InteractionRow]:
    """Every contact held for this customer id (recorded for it, or belonging to it now)."""
    from sqlalchemy import or_, select

    async with uow:
        rows = await uow.session.scalars(
            select(InteractionRow)
            .where(
                or_(
                    InteractionRow.customer_id == customer_id,
                    InteractionRow.origin_customer_id == customer_id,
                )
            )
            .order_by(InteractionRow.occurred_at.desc(), InteractionRow.id.desc())
        )
        return list(rows)
