"""Use cases: record a message sent to a customer, record what happened to it, read them back.

A communication is a contact like any other: it has its row on the customer's timeline (kind
`communication`, direction outbound) and publishes `interaction_recorded`. Its delivery events are
kept as a history; the current status (and the reason of a bounce or a return) is on the
communication and, for the timeline, in its row's `attributes.status`.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy.exc import IntegrityError

from services.interactions import timeline
from services.interactions.communications.domain import (
    BounceType,
    Current,
    DeliveryRefused,
    DeliveryStatus,
    advance,
    check_event,
)
from services.interactions.communications.models import CommunicationRow, DeliveryEventRow
from services.interactions.communications.repository import CommunicationRepository
from services.interactions.communications.schemas import CommunicationCreate, DeliveryEventCreate
from services.interactions.directory import CustomerDirectory
from services.interactions.domain import Channel, Direction, InteractionKind
from services.interactions.models import InteractionRow
from shared.errors import Conflict, FieldError, Gone, InvalidInput, NotFound
from shared.uow import UnitOfWork

_CHANNEL_NAMES = {Channel.EMAIL: "E-mail", Channel.SMS: "SMS", Channel.DIRECT_MAIL: "Direct mail"}


def _summary(data: CommunicationCreate) -> str:
    what = _CHANNEL_NAMES.get(data.channel, f"{data.channel.value.replace('_', ' ').capitalize()} message")
    about = data.campaign_id or data.template_id
    return f"{what} sent" + (f" ({about})" if about else "")


async def record(
    uow: UnitOfWork, directory: CustomerDirectory, data: CommunicationCreate
) -> tuple[CommunicationRow, bool]:
    """Store a communication, its first delivery event and its timeline row, and publish
    `interaction_recorded`. Returns (row, created): the same idempotency key again returns the
    communication recorded the first time."""
    async with uow:
        session = uow.session
        repo = CommunicationRepository(session)
        if data.idempotency_key is not None:
            existing = await repo.get_by_key(data.source_system, data.idempotency_key)
            if existing is not None:
                return existing, False
        found = await directory.lookup(session, data.customer_id)
        if found is None:
            raise InvalidInput("body.customer_id", f"unknown customer {data.customer_id}")
        if found.erased:
            raise InvalidInput("body.customer_id", f"customer {data.customer_id} was erased")
        now = datetime.now(UTC)
        communication_id = str(uuid.uuid4())
        contact = timeline.new_interaction(
            customer_id=found.customer_id,
            origin_customer_id=data.customer_id,
            kind=InteractionKind.COMMUNICATION.value,
            channel=data.channel.value,
            direction=Direction.OUTBOUND.value,
            occurred_at=data.sent_at,
            source_system=data.source_system,
            summary=_summary(data),
            attributes={
                "campaign_id": data.campaign_id,
                "template_id": data.template_id,
                "status": data.status.value,
            },
            subject_type="communication",
            subject_id=communication_id,
            recorded_at=now,
        )
        row = CommunicationRow(
            id=communication_id,
            customer_id=found.customer_id,
            origin_customer_id=data.customer_id,
            channel=data.channel.value,
            campaign_id=data.campaign_id,
            template_id=data.template_id,
            subject=data.subject,
            address=data.address,
            sent_at=data.sent_at,
            recorded_at=now,
            source_system=data.source_system,
            idempotency_key=data.idempotency_key,
            status=data.status.value,
            status_at=data.sent_at,
            bounce_type=None,
            status_reason=None,
            interaction_id=contact.id,
            deliveries=[
                DeliveryEventRow(
                    id=str(uuid.uuid4()),
                    customer_id=found.customer_id,
                    origin_customer_id=data.customer_id,
                    status=data.status.value,
                    occurred_at=data.sent_at,
                    recorded_at=now,
                    bounce_type=None,
                    reason=None,
                    idempotency_key=None,
                )
            ],
        )
        repo.add(row)
        session.add(contact)
        try:
            await session.flush()
        except IntegrityError:
            await uow.rollback()  # the same key, recorded concurrently: that one won
            if data.idempotency_key is not None:
                existing = await repo.get_by_key(data.source_system, data.idempotency_key)
                if existing is not None:
                    return existing, False
            raise
        await uow.publish(timeline.recorded_event(contact))
        await uow.commit()
    return row, True


async def record_delivery(
    uow: UnitOfWork, communication_id: str, data: DeliveryEventCreate
) -> tuple[CommunicationRow, bool]:
    """Add a delivery event to a communication's history and move its current status (see
    `communications.domain.advance`). Returns (communication, recorded): an event whose
    idempotency key was seen before is not recorded again."""
    async with uow:
        session = uow.session
        repo = CommunicationRepository(session)
        row = await repo.get(communication_id, for_update=True)
        if row is None:
            raise NotFound(
                f"communication {communication_id} does not exist", communication_id=communication_id
            )
        if data.idempotency_key is not None and await repo.delivery_by_key(row.id, data.idempotency_key):
            return row, False
        current = Current(
            DeliveryStatus(row.status),
            BounceType(row.bounce_type) if row.bounce_type else None,
            row.status_reason,
        )
        try:
            check_event(Channel(row.channel), data.status, data.bounce_type, data.reason)
            after = advance(current, data.status, data.bounce_type, data.reason)
        except DeliveryRefused as exc:
            if exc.conflict:
                raise Conflict(exc.message, errors=[FieldError(exc.field, exc.message)]) from exc
            raise InvalidInput(exc.field, exc.message) from exc
        row.deliveries.append(
            DeliveryEventRow(
                id=str(uuid.uuid4()),
                customer_id=row.customer_id,
                origin_customer_id=row.origin_customer_id,
                status=data.status.value,
                occurred_at=data.occurred_at,
                recorded_at=datetime.now(UTC),
                bounce_type=data.bounce_type.value if data.bounce_type else None,
                reason=data.reason,
                idempotency_key=data.idempotency_key,
            )
        )
        if after != current:
            row.status = after.status.value
            row.status_at = data.occurred_at
            row.bounce_type = after.bounce_type.value if after.bounce_type else None
            row.status_reason = after.reason
            contact = await session.get(InteractionRow, row.interaction_id)
            if contact is not None and not contact.erased:
                contact.attributes = {**contact.attributes, "status": row.status}
        try:
            await session.flush()
        except IntegrityError:
            await uow.rollback()  # the same provider event, recorded concurrently: that one won
            again = await repo.get(communication_id)
            if again is not None and data.idempotency_key is not None:
                return again, False
            raise
        await uow.commit()
    return row, True


async def get(uow: UnitOfWork, communication_id: str) -> CommunicationRow:
    async with uow:
        row = await CommunicationRepository(uow.session).get(communication_id)
    if row is None:
        raise NotFound(f"communication {communication_id} does not exist", communication_id=communication_id)
    return row


async def list_for_customer(
    uow: UnitOfWork,
    directory: CustomerDirectory,
    customer_id: str,
    *,
    statuses: Sequence[str] = (),
    channels: Sequence[str] = (),
    campaign_id: str | None = None,
    limit: int = 50,
) -> list[CommunicationRow]:
    """The customer's communications, newest first (a merged id shows its survivor's)."""
    async with uow:
        found = await directory.lookup(uow.session, customer_id)
        if found is None:
            raise NotFound(f"customer {customer_id} does not exist", customer_id=customer_id)
        if found.erased:
            raise Gone(f"customer {customer_id} was erased")
        rows = await CommunicationRepository(uow.session).list_for_customer(
            found.customer_id,
            statuses=list(statuses),
            channels=list(channels),
            campaign_id=campaign_id,
            limit=limit,
        )
        await uow.commit()  # the lookup may have remembered a customer
    return rows
