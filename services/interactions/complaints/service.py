"""Complaint use cases: open, read, list the work queue, change status, assign, write messages.

Each runs in one unit of work: the complaint, its history rows, its timeline row and its events are
committed together or not at all. A complaint being changed is locked (`SELECT … FOR UPDATE` on
PostgreSQL; SQLite runs one writer at a time), so history numbering and the SLA watch never race a
change; `If-Match` (the version) guards against changing a complaint someone else changed since it
was read.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

import orjson
from sqlalchemy import ColumnElement, and_, or_, select, tuple_
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.interactions import timeline
from services.interactions.complaints import domain, sla
from services.interactions.complaints.domain import ComplaintStatus, EventKind
from services.interactions.complaints.models import Complaint, ComplaintEventRow
from services.interactions.complaints.schemas import Assignment, ComplaintCreate, MessageCreate, StatusChange
from services.interactions.directory import CustomerDirectory
from services.interactions.domain import Direction, InteractionKind
from shared.contracts.interactions import ComplaintOpened, ComplaintStatusChanged
from shared.errors import Conflict, FieldError, Gone, InvalidInput, NotFound, PreconditionFailed
from shared.uow import UnitOfWork

MAX_PAGE = 200


@dataclass(frozen=True, slots=True)
class ComplaintView:
    complaint: Complaint
    events: list[ComplaintEventRow]


def check_authority(owner_id: str | None, minor: int | None, currency: str | None) -> None:
    """Compensation authority belongs to an owner and is an amount in a currency."""
    if minor is not None and owner_id is None:
        raise InvalidInput("body.owner_id", "an owner_authority_minor needs the owner it belongs to")
    if minor is not None and currency is None:
        raise InvalidInput("body.owner_authority_currency", "give the currency of owner_authority_minor")
    if currency is not None and minor is None:
        raise InvalidInput("body.owner_authority_minor", "give the amount for owner_authority_currency")


def _dues(c: Complaint) -> domain.DueDates:
    return domain.DueDates(c.first_response_due, c.resolution_due)


def _event_row(c: Complaint, seq: int, kind: EventKind, at: datetime, **fields: Any) -> ComplaintEventRow:
    row = ComplaintEventRow(
        id=str(uuid.uuid4()),
        complaint_id=c.id,
        seq=seq,
        customer_id=c.customer_id,
        origin_customer_id=c.origin_customer_id,
        kind=kind.value,
        occurred_at=at,
        actor_id=fields.pop("actor_id", None),
        from_status=fields.pop("from_status", None),
        to_status=fields.pop("to_status", None),
        direction=fields.pop("direction", None),
        channel=fields.pop("channel", None),
        text=fields.pop("text", None),
        details=fields.pop("details", {}),
    )
    if fields:
        raise TypeError(f"unknown history fields {sorted(fields)}")
    return row


def _append(
    session: AsyncSession, c: Complaint, kind: EventKind, at: datetime, **fields: Any
) -> ComplaintEventRow:
    """A history row, numbered after the last one (the complaint is locked by the caller)."""
    c.last_seq += 1
    row = _event_row(c, c.last_seq, kind, at, **fields)
    session.add(row)
    return row


def _status_changed(c: Complaint, before: str, at: datetime, by: str | None) -> ComplaintStatusChanged:
    return ComplaintStatusChanged(
        complaint_id=c.id,
        customer_id=c.customer_id,
        from_status=before,
        to_status=c.status,
        changed_at=at,
        changed_by=by,
        answered=c.first_response_at is not None,
        open=c.status != ComplaintStatus.CLOSED.value,
        priority=c.priority,
        category=c.category,
        channel=c.channel,
        opened_at=c.opened_at,
        first_response_at=c.first_response_at,
        resolved_at=c.resolved_at,
        escalation_level=c.escalation_level,
        reopen_count=c.reopen_count,
    )


async def _move(
    uow: UnitOfWork, c: Complaint, target: ComplaintStatus, at: datetime, by: str | None, note: str | None
) -> None:
    """Apply an allowed transition: stamps, queue position, history row, event."""
    before = c.status
    stamps = domain.stamps_after(target, at, domain.Stamps(c.first_response_at, c.resolved_at, c.closed_at))
    c.status = target.value
    c.first_response_at, c.resolved_at, c.closed_at = (
        stamps.first_response_at,
        stamps.resolved_at,
        stamps.closed_at,
    )
    if target is ComplaintStatus.REOPENED:
        c.reopen_count += 1
    c.next_due_at = domain.next_due(target, c.first_response_at, _dues(c))
    c.updated_at = at
    _append(
        uow.session,
        c,
        EventKind.STATUS_CHANGED,
        at,
        actor_id=by,
        from_status=before,
        to_status=target.value,
        text=note,
    )
    await uow.publish(_status_changed(c, before, at, by))


async def _by_key(session: AsyncSession, source_system: str, key: str) -> Complaint | None:
    return cast(
        Complaint | None,
        await session.scalar(
            select(Complaint).where(
                Complaint.source_system == source_system, Complaint.idempotency_key == key
            )
        ),
    )


async def _history(session: AsyncSession, complaint_id: str) -> list[ComplaintEventRow]:
    return list(
        await session.scalars(
            select(ComplaintEventRow)
            .where(ComplaintEventRow.complaint_id == complaint_id)
            .order_by(ComplaintEventRow.seq)
        )
    )


async def _current_customer(session: AsyncSession, directory: CustomerDirectory, customer_id: str) -> str:
    found = await directory.lookup(session, customer_id)
    if found is None:
        raise InvalidInput("body.customer_id", f"unknown customer {customer_id}")
    if found.erased:
        raise InvalidInput("body.customer_id", f"customer {customer_id} was erased")
    return found.customer_id


async def open_complaint(
    uow: UnitOfWork, directory: CustomerDirectory, data: ComplaintCreate
) -> tuple[ComplaintView, bool]:
    """Open a complaint: the complaint, its first history row, its row on the customer's timeline
    and `complaint_opened`, in one transaction. Returns (view, created): the same idempotency key
    again returns the complaint opened the first time."""
    check_authority(data.owner_id, data.owner_authority_minor, data.owner_authority_currency)
    async with uow:
        session = uow.session
        if data.idempotency_key is not None:
            existing = await _by_key(session, data.source_system, data.idempotency_key)
            if existing is not None:
                return ComplaintView(existing, await _history(session, existing.id)), False
        customer_id = await _current_customer(session, directory, data.customer_id)
        targets = await sla.targets_for(session, data.channel.value, data.priority.value)
        dues = domain.due_dates(data.opened_at, targets)
        now = datetime.now(UTC)
        complaint_id = str(uuid.uuid4())
        contact = timeline.new_interaction(
            customer_id=customer_id,
            origin_customer_id=data.customer_id,
            kind=InteractionKind.COMPLAINT.value,
            channel=data.channel.value,
            direction=Direction.INBOUND.value,
            occurred_at=data.opened_at,
            source_system=data.source_system,
            agent_id=data.opened_by,
            summary=f"Complaint ({data.category}, {data.priority.value}): {data.subject}"[:300],
            subject_type="complaint",
            subject_id=complaint_id,
            recorded_at=now,
        )
        c = Complaint(
            id=complaint_id,
            customer_id=customer_id,
            origin_customer_id=data.customer_id,
            channel=data.channel.value,
            priority=data.priority.value,
            category=data.category,
            subject=data.subject,
            status=ComplaintStatus.OPENED.value,
            owner_id=data.owner_id,
            owner_authority_minor=data.owner_authority_minor,
            owner_authority_currency=data.owner_authority_currency,
            opened_at=data.opened_at,
            first_response_at=None,
            resolved_at=None,
            closed_at=None,
            first_response_due=dues.first_response_due,
            resolution_due=dues.resolution_due,
            next_due_at=domain.next_due(ComplaintStatus.OPENED, None, dues),
            first_response_breached=False,
            resolution_breached=False,
            escalation_level=0,
            reopen_count=0,
            last_seq=1,  # the `opened` history row
            source_system=data.source_system,
            idempotency_key=data.idempotency_key,
            opened_by=data.opened_by,
            interaction_id=contact.id,
            updated_at=now,
        )
        session.add(c)
        session.add(contact)
        try:
            await session.flush()  # the complaint first: its history rows refer to it
        except IntegrityError:
            await uow.rollback()  # the same key, opened concurrently: that one won
            if data.idempotency_key is not None:
                existing = await _by_key(session, data.source_system, data.idempotency_key)
                if existing is not None:
                    return ComplaintView(existing, await _history(session, existing.id)), False
            raise
        opened = _event_row(
            c,
            1,
            EventKind.OPENED,
            data.opened_at,
            actor_id=data.opened_by,
            to_status=ComplaintStatus.OPENED.value,
            direction=Direction.INBOUND.value,
            channel=data.channel.value,
            text=data.description,
            details={"owner_id": data.owner_id} if data.owner_id else {},
        )
        session.add(opened)
        await uow.publish(
            ComplaintOpened(
                complaint_id=c.id,
                customer_id=customer_id,
                channel=c.channel,
                priority=c.priority,
                category=c.category,
                opened_at=c.opened_at,
                first_response_due=c.first_response_due,
                resolution_due=c.resolution_due,
                owner_id=c.owner_id,
            )
        )
        await uow.commit()
    return ComplaintView(c, [opened]), True


async def get(uow: UnitOfWork, complaint_id: str) -> ComplaintView:
    async with uow:
        c = await uow.session.get(Complaint, complaint_id)
        if c is None:
            raise NotFound(f"complaint {complaint_id} does not exist", complaint_id=complaint_id)
        return ComplaintView(c, await _history(uow.session, complaint_id))


async def _locked(uow: UnitOfWork, complaint_id: str, if_match: int | None) -> Complaint:
    c = await uow.session.scalar(select(Complaint).where(Complaint.id == complaint_id).with_for_update())
    if c is None:
        raise NotFound(f"complaint {complaint_id} does not exist", complaint_id=complaint_id)
    if if_match is not None and if_match != c.version:
        raise PreconditionFailed(
            f"complaint {complaint_id} is at version {c.version}, not {if_match}: read it again",
            current_version=c.version,
        )
    return c


async def change_status(
    uow: UnitOfWork, complaint_id: str, data: StatusChange, if_match: int | None = None
) -> ComplaintView:
    """Move the complaint through its lifecycle; publishes `complaint_status_changed`."""
    async with uow:
        c = await _locked(uow, complaint_id, if_match)
        domain.check_transition(ComplaintStatus(c.status), data.status, customer_agreed=data.customer_agreed)
        await _move(uow, c, data.status, datetime.now(UTC), data.actor_id, data.note)
        await uow.commit()
    return await get(uow, complaint_id)


async def assign(
    uow: UnitOfWork, complaint_id: str, data: Assignment, if_match: int | None = None
) -> ComplaintView:
    """Give the complaint an owner (and their compensation authority). A closed complaint is
    reopened first."""
    check_authority(data.owner_id, data.owner_authority_minor, data.owner_authority_currency)
    async with uow:
        c = await _locked(uow, complaint_id, if_match)
        if c.status == ComplaintStatus.CLOSED.value:
            raise Conflict(
                "body.owner_id: a closed complaint has no owner to change; reopen it first",
                errors=[FieldError("body.owner_id", "the complaint is closed; reopen it first")],
            )
        now = datetime.now(UTC)
        previous = c.owner_id
        c.owner_id = data.owner_id
        c.owner_authority_minor = data.owner_authority_minor
        c.owner_authority_currency = data.owner_authority_currency
        c.updated_at = now
        _append(
            uow.session,
            c,
            EventKind.ASSIGNED,
            now,
            actor_id=data.actor_id,
            details={
                "owner_id": data.owner_id,
                "previous_owner_id": previous,
                "owner_authority_minor": data.owner_authority_minor,
                "owner_authority_currency": data.owner_authority_currency,
            },
        )
        await uow.commit()
    return await get(uow, complaint_id)


async def add_message(
    uow: UnitOfWork,
    directory: CustomerDirectory,
    complaint_id: str,
    data: MessageCreate,
    if_match: int | None = None,
) -> ComplaintView:
    """A message from or to the customer, kept in the history and on the timeline. The first
    outbound message is the first response; on a complaint still `opened` it acknowledges it (with
    the status change and its event, so risk scoring learns it was answered)."""
    async with uow:
        session = uow.session
        c = await _locked(uow, complaint_id, if_match)
        found = await directory.lookup(session, c.customer_id)
        if found is not None and found.erased:
            raise Gone(f"the customer of complaint {complaint_id} was erased: no new messages")
        now = datetime.now(UTC)
        channel = (data.channel.value if data.channel else None) or c.channel
        contact = timeline.new_interaction(
            customer_id=c.customer_id,
            origin_customer_id=c.origin_customer_id,
            kind=InteractionKind.COMPLAINT.value,
            channel=channel,
            direction=data.direction.value,
            occurred_at=now,
            source_system=c.source_system,
            agent_id=data.author_id,
            summary="Reply on a complaint"
            if data.direction is Direction.OUTBOUND
            else "Customer message on a complaint",
            subject_type="complaint",
            subject_id=c.id,
            recorded_at=now,
        )
        session.add(contact)
        _append(
            session,
            c,
            EventKind.MESSAGE,
            now,
            actor_id=data.author_id,
            direction=data.direction.value,
            channel=channel,
            text=data.text,
            details={"interaction_id": contact.id},
        )
        c.updated_at = now
        if data.direction is Direction.OUTBOUND and c.first_response_at is None:
            if c.status == ComplaintStatus.OPENED.value:
                await _move(uow, c, ComplaintStatus.ACKNOWLEDGED, now, data.author_id, None)
            else:
                c.first_response_at = now
                c.next_due_at = domain.next_due(ComplaintStatus(c.status), now, _dues(c))
        await uow.commit()
    return await get(uow, complaint_id)


# --- the work queue --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class QueueQuery:
    statuses: Sequence[str] = ()
    owner_id: str | None = None
    customer_id: str | None = None
    priorities: Sequence[str] = ()
    channels: Sequence[str] = ()
    overdue: bool | None = None
    cursor: str | None = None
    limit: int = 50


def encode_cursor(next_due_at: datetime | None, complaint_id: str) -> str:
    raw = orjson.dumps([next_due_at.isoformat() if next_due_at else None, complaint_id])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime | None, str]:
    try:
        at, complaint_id = orjson.loads(
            base64.urlsafe_b64decode((cursor + "=" * (-len(cursor) % 4)).encode())
        )
        moment = datetime.fromisoformat(at) if at is not None else None
        if (moment is not None and moment.tzinfo is None) or not isinstance(complaint_id, str):
            raise ValueError("bad cursor")
    except (ValueError, TypeError, orjson.JSONDecodeError) as exc:
        raise InvalidInput("query.cursor", "not a cursor this API gave out") from exc
    return moment, complaint_id


def _after(cursor: str) -> ColumnElement[bool]:
    """Rows after the cursor in queue order: (next_due_at, id) ascending, complaints without a due
    date (resolved, closed) last."""
    at, complaint_id = decode_cursor(cursor)
    if at is None:
        return and_(Complaint.next_due_at.is_(None), Complaint.id > complaint_id)
    return or_(
        and_(
            Complaint.next_due_at.is_not(None),
            tuple_(Complaint.next_due_at, Complaint.id) > tuple_(at, complaint_id),
        ),
        Complaint.next_due_at.is_(None),
    )


async def queue(
    uow: UnitOfWork, directory: CustomerDirectory, query: QueueQuery
) -> tuple[list[Complaint], str | None]:
    """Complaints by SLA urgency: overdue first (the longest overdue on top), then the nearest due;
    resolved and closed ones last. Keyset-paginated."""
    async with uow:
        session = uow.session
        statement = select(Complaint)
        if query.customer_id is not None:
            found = await directory.lookup(session, query.customer_id)
            if found is None:
                raise InvalidInput("query.customer_id", f"unknown customer {query.customer_id}")
            statement = statement.where(Complaint.customer_id == found.customer_id)
        if query.statuses:
            statement = statement.where(Complaint.status.in_(list(query.statuses)))
        if query.owner_id is not None:
            statement = statement.where(Complaint.owner_id == query.owner_id)
        if query.priorities:
            statement = statement.where(Complaint.priority.in_(list(query.priorities)))
        if query.channels:
            statement = statement.where(Complaint.channel.in_(list(query.channels)))
        if query.overdue is not None:
            now = datetime.now(UTC)
            statement = statement.where(
                Complaint.next_due_at < now
                if query.overdue
                else or_(Complaint.next_due_at.is_(None), Complaint.next_due_at >= now)
            )
        if query.cursor:
            statement = statement.where(_after(query.cursor))
        limit = max(1, min(query.limit, MAX_PAGE))
        rows = list(
            await session.scalars(
                statement.order_by(
                    Complaint.next_due_at.is_(None), Complaint.next_due_at, Complaint.id
                ).limit(limit + 1)
            )
        )
        await uow.commit()  # the lookup may have remembered a customer
    if len(rows) > limit:
        rows = rows[:limit]
        return rows, encode_cursor(rows[-1].next_due_at, rows[-1].id)
    return rows, None


async def customer_complaints(
    uow: UnitOfWork, directory: CustomerDirectory, customer_id: str, limit: int
) -> list[Complaint]:
    """The customer's complaints (those of customers merged into it included), newest first."""
    async with uow:
        found = await directory.lookup(uow.session, customer_id)
        if found is None:
            raise NotFound(f"customer {customer_id} does not exist", customer_id=customer_id)
        if found.erased:
            raise Gone(f"customer {customer_id} was erased")
        rows = list(
            await uow.session.scalars(
                select(Complaint)
                .where(Complaint.customer_id == found.customer_id)
                .order_by(Complaint.opened_at.desc(), Complaint.id.desc())
                .limit(limit)
            )
        )
        await uow.commit()
    return rows
