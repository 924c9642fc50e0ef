"""Interactions' use cases."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy.exc import IntegrityError

from services.interactions import timeline
from services.interactions.bulk_purchases import INTERACTIONS, LINES, PURCHASES, purchase_rows
from services.interactions.directory import CustomerDirectory
from services.interactions.domain import Direction, InteractionKind, format_money
from services.interactions.models import InteractionRow, Purchase, RefundLineRow, RefundRow
from services.interactions.refunds import (
    BoughtLine,
    PaymentStatus,
    ReturnedLine,
    TransitionRefused,
    check_transition,
    plan_refund,
)
from services.interactions.repository import PurchaseRepository, RefundRepository
from services.interactions.schemas import PaymentStatusUpdate, PurchaseCreate, RefundCreate
from shared.contracts.interactions import PurchaseLine, PurchaseRefunded
from shared.db import dialect_insert, insert_rows
from shared.errors import Conflict, FieldError, InvalidInput, NotFound
from shared.uow import UnitOfWork


async def record_purchase(
    uow: UnitOfWork, directory: CustomerDirectory, data: PurchaseCreate
) -> tuple[Purchase, bool]:
    """Store a purchase and publish `purchase_recorded`. Returns (purchase, created); a repeat of the same
    external id returns the purchase recorded the first time.

    The common case — a new purchase — costs one lookup and four inserts in one transaction: the
    purchase row goes first with ON CONFLICT DO NOTHING on (source system, external id), so a repeat
    (or the same purchase sent by two requests at once) is found by that insert writing nothing, not
    by a query beforehand, and nothing else is written for it."""
    async with uow:
        session = uow.session
        found = await directory.lookup(session, data.customer_id)
        if found is None or found.erased:
            existing = await _already_recorded(uow, data)
            if existing is not None:
                return existing, False
            if found is None:
                raise InvalidInput("body.customer_id", f"unknown customer {data.customer_id}")
            raise InvalidInput("body.customer_id", f"customer {data.customer_id} was erased")
        rows = purchase_rows(data, found.customer_id, datetime.now(UTC))
        written = await session.execute(
            dialect_insert(session)(PURCHASES)
            .values(rows.purchase)
            .on_conflict_do_nothing(index_elements=[PURCHASES.c.source_system, PURCHASES.c.external_id])
            .returning(PURCHASES.c.id)
        )
        if written.first() is None:
            existing = await _already_recorded(uow, data)
            if existing is None:  # pragma: no cover - the conflicting row is committed, so it is there
                raise Conflict("this purchase's external id was being recorded at the same moment: retry")
            return existing, False
        await insert_rows(session, LINES, rows.lines)
        await insert_rows(session, INTERACTIONS, [rows.timeline])
        await uow.publish(rows.event)
        await uow.commit()
    return rows.as_model(), True


async def _already_recorded(uow: UnitOfWork, data: PurchaseCreate) -> Purchase | None:
    if data.external_id is None:
        return None
    return await PurchaseRepository(uow.session).get_by_external_id(data.source_system, data.external_id)


async def get_purchase(uow: UnitOfWork, purchase_id: str) -> Purchase:
    async with uow:
        purchase = await PurchaseRepository(uow.session).get(purchase_id)
    if purchase is None:
        raise NotFound(f"purchase {purchase_id} does not exist", purchase_id=purchase_id)
    return purchase


async def change_payment_status(uow: UnitOfWork, purchase_id: str, data: PaymentStatusUpdate) -> Purchase:
    """Move a purchase's payment status (see `refunds.TRANSITIONS`); the same status again changes
    nothing. A forbidden move is a 409 naming `body.status`."""
    async with uow:
        purchase = await PurchaseRepository(uow.session).get(purchase_id, for_update=True)
        if purchase is None:
            raise NotFound(f"purchase {purchase_id} does not exist", purchase_id=purchase_id)
        try:
            check_transition(PaymentStatus(purchase.payment_status), data.status)
        except TransitionRefused as exc:
            raise Conflict(str(exc), errors=[FieldError("body.status", str(exc))]) from exc
        if purchase.payment_status != data.status.value:
            purchase.payment_status = data.status.value
            purchase.payment_status_at = data.occurred_at
            await uow.commit()
    return purchase


async def record_refund(
    uow: UnitOfWork, purchase_id: str, data: RefundCreate
) -> tuple[RefundRow, Purchase, bool]:
    """Record a return and/or refund on a purchase: the refund and its lines, the purchase's new
    refunded total, returned quantities and payment status, a timeline row and `purchase_refunded`,
    all in one transaction. Returns (refund, purchase, created): the same idempotency key again
    returns the refund recorded the first time.

    The purchase row is locked first (`SELECT … FOR UPDATE` on PostgreSQL; SQLite runs one writing
    transaction at a time), so two refunds of one purchase at once are checked one after the other
    and can never give back more than was paid."""
    async with uow:
        session = uow.session
        purchases, refunds = PurchaseRepository(session), RefundRepository(session)
        existing = await refunds.get_by_key(data.source_system, data.idempotency_key)
        if existing is not None:
            return existing, await _refunded_purchase(purchases, existing, purchase_id), False
        purchase = await purchases.get(purchase_id, for_update=True)
        if purchase is None:
            raise NotFound(f"purchase {purchase_id} does not exist", purchase_id=purchase_id)
        # The same key may have been committed while this request waited for the lock.
        existing = await refunds.get_by_key(data.source_system, data.idempotency_key)
        if existing is not None:
            return existing, await _refunded_purchase(purchases, existing, purchase_id), False

        if data.occurred_at < purchase.occurred_at:
            raise InvalidInput("body.occurred_at", "the refund is dated before the purchase")
        bought = {
            line.line_no: BoughtLine(
                line_no=line.line_no,
                quantity=line.quantity,
                unit_price_minor=line.unit_price_minor,
                returned_quantity=line.returned_quantity,
            )
            for line in purchase.lines
        }
        plan = plan_refund(
            status=PaymentStatus(purchase.payment_status),
            total_minor=purchase.total_minor,
            refunded_minor=purchase.refunded_total_minor,
            currency=purchase.currency,
            lines=bought,
            returns=[ReturnedLine(line_no=item.line_no, quantity=item.quantity) for item in data.lines],
            amount_minor=data.amount_minor,
            amount_currency=data.currency,
        )
        now = datetime.now(UTC)
        origin = purchase.origin_customer_id or purchase.customer_id
        refund = RefundRow(
            id=str(uuid.uuid4()),
            purchase_id=purchase.id,
            customer_id=purchase.customer_id,
            origin_customer_id=origin,
            source_system=data.source_system,
            idempotency_key=data.idempotency_key,
            channel=(data.channel.value if data.channel is not None else purchase.channel),
            occurred_at=data.occurred_at,
            recorded_at=now,
            currency=purchase.currency,
            amount_minor=plan.amount_minor,
            reason=data.reason,
            lines=[RefundLineRow(line_no=item.line_no, quantity=item.quantity) for item in plan.returned],
        )
        by_no = {line.line_no: line for line in purchase.lines}
        for item in plan.returned:
            by_no[item.line_no].returned_quantity += item.quantity
        if plan.status.value != purchase.payment_status:
            purchase.payment_status = plan.status.value
            purchase.payment_status_at = data.occurred_at
        purchase.refunded_total_minor = plan.refunded_total_minor
        purchase.refunds.append(refund)
        units = sum(item.quantity for item in plan.returned)
        summary = f"Refund of {format_money(plan.amount_minor, refund.currency)}"
        if units:
            summary += f", {units} item(s) returned"
        session.add(
            timeline.new_interaction(
                customer_id=purchase.customer_id,
                origin_customer_id=origin,
                kind=InteractionKind.REFUND.value,
                channel=refund.channel,
                direction=Direction.INBOUND.value,
                occurred_at=refund.occurred_at,
                source_system=refund.source_system,
                summary=f"{summary} ({refund.reason})",
                subject_type="refund",
                subject_id=refund.id,
                attributes={"purchase_id": purchase.id},
            )
        )
        try:
            await session.flush()
        except IntegrityError:
            # The same key, for another purchase, recorded concurrently: that one won.
            await uow.rollback()
            existing = await refunds.get_by_key(data.source_system, data.idempotency_key)
            if existing is not None:
                return existing, await _refunded_purchase(purchases, existing, purchase_id), False
            raise
        await uow.publish(
            PurchaseRefunded(
                refund_id=refund.id,
                purchase_id=purchase.id,
                customer_id=purchase.customer_id,
                occurred_at=refund.occurred_at,
                currency=refund.currency,
                amount_minor=refund.amount_minor,
                purchase_total_minor=purchase.total_minor,
                refunded_total_minor=purchase.refunded_total_minor,
                lines=[
                    PurchaseLine(
                        sku=by_no[item.line_no].sku,
                        category=by_no[item.line_no].category,
                        quantity=item.quantity,
                        unit_price_minor=by_no[item.line_no].unit_price_minor,
                    )
                    for item in plan.returned
                ],
                reason=refund.reason,
                payment_status=purchase.payment_status,
            )
        )
        await uow.commit()
    return refund, purchase, True


async def _refunded_purchase(purchases: PurchaseRepository, refund: RefundRow, purchase_id: str) -> Purchase:
    """The purchase of a refund found by its idempotency key, which must be the one asked about."""
    if refund.purchase_id != purchase_id:
        message = f"this idempotency key was used for refund {refund.id} of purchase {refund.purchase_id}"
        raise Conflict(message, errors=[FieldError("body.idempotency_key", message)])
    purchase = await purchases.get(refund.purchase_id)
    assert purchase is not None  # refunds are deleted with their purchase
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
