"""Consents' use cases, `may_contact`, and the right-of-access and erasure parts for consents.

`customer_ids` is always a golden record's ids with the survivor first: reads unite all of them,
writes go to the first. Every choice is appended to `consent_history`; `ConsentChanged` is published
only when the golden record's status for that channel and purpose actually changes (a first choice
counts, even a withdrawal of something never granted: downstream suppression lists want to know).

Erasure keeps the proof that consent was given, denied or withdrawn (channel, purpose, status,
source, timestamps: GDPR lets a controller keep what it needs to demonstrate it honoured the
customer's choices) but deletes the free-text evidence and the actor, and replaces the contact
preferences with a bare do-not-contact tombstone so no remaining grant can be acted upon.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.identity.consents import domain
from services.identity.consents.customers import require_customer
from services.identity.consents.domain import Channel, Purpose
from services.identity.consents.models import ConsentHistoryRow, ConsentRow, ContactPreferencesRow
from services.identity.consents.repository import ConsentRepository
from services.identity.consents.schemas import (
    ConsentChange,
    ConsentHistoryOut,
    ConsentOut,
    ConsentsOut,
    ContactPreferencesIn,
    ContactPreferencesOut,
)
from shared.contracts.identity import ConsentChanged
from shared.errors import Conflict
from shared.uow import UnitOfWork

SYSTEM = "system"  # the actor when the request names none (as in identity's audit trail)


def _strictly_after(now: datetime, stamps: Sequence[datetime]) -> datetime:
    """`now`, or just after the latest stamp if a clock was ahead: a new choice must be the latest."""
    latest = max(stamps, default=None)
    if latest is not None and latest >= now:
        return latest + timedelta(microseconds=1)
    return now


async def get_consents(uow: UnitOfWork, customer_ids: Sequence[str]) -> ConsentsOut:
    async with uow:
        await require_customer(uow.session, customer_ids[0])
        repo = ConsentRepository(uow.session)
        current = domain.current_consents(await repo.current_rows(customer_ids))
        preferences = domain.current_preferences(await repo.preferences(customer_ids))
    return ConsentsOut(
        customer_id=customer_ids[0],
        consents=[ConsentOut.model_validate(current[key]) for key in sorted(current)],
        preferences=ContactPreferencesOut.from_row(preferences),
    )


async def set_consent(
    uow: UnitOfWork,
    customer_ids: Sequence[str],
    channel: Channel,
    purpose: Purpose,
    change: ConsentChange,
    *,
    actor: str | None = None,
) -> ConsentOut:
    """Record the customer's choice; publish `ConsentChanged` if the status differs from the current one.
    `actor` is who recorded it (`system` when unknown)."""
    customer_id = customer_ids[0]
    actor = actor or SYSTEM
    async with uow:
        await require_customer(uow.session, customer_id, for_update=True, writable=True)
        repo = ConsentRepository(uow.session)
        rows = await repo.current_rows(customer_ids, channel=channel, purpose=purpose, for_update=True)
        held = domain.current_consents(rows).get((channel, purpose))
        previous = domain.as_status(held.status) if held is not None else None
        changed_at = _strictly_after(datetime.now(UTC), [row.changed_at for row in rows])

        row = next((r for r in rows if r.customer_id == customer_id), None)
        if row is None:
            row = ConsentRow(customer_id=customer_id, channel=channel.value, purpose=purpose.value)
            repo.add(row)
        row.status = change.status
        row.source = change.source.value
        row.evidence = change.evidence
        row.actor = actor
        row.changed_at = changed_at
        repo.add(
            ConsentHistoryRow(
                customer_id=customer_id,
                channel=channel.value,
                purpose=purpose.value,
                status=change.status,
                previous_status=previous,
                source=change.source.value,
                evidence=change.evidence,
                actor=actor,
                changed_at=changed_at,
            )
        )
        try:
            await uow.session.flush()
        except IntegrityError as exc:  # pragma: no cover - the customer row lock serialises writers
            # Another request recorded the first choice for this pair at the same moment.
            raise Conflict(
                f"the {channel.value}/{purpose.value} consent changed concurrently; read it and retry",
                customer_id=customer_id,
            ) from exc
        if domain.status_changed(previous, change.status):
            await uow.publish(
                ConsentChanged(
                    customer_id=customer_id,
                    channel=channel.value,
                    purpose=purpose.value,
                    status=change.status,
                    previous_status=previous,
                    changed_at=changed_at,
                )
            )
        await uow.commit()
    return ConsentOut.model_validate(row)


async def consent_history(
    uow: UnitOfWork,
    customer_ids: Sequence[str],
    *,
    channel: Channel | None = None,
    purpose: Purpose | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[ConsentHistoryOut]:
    async with uow:
        await require_customer(uow.session, customer_ids[0])
        rows = await ConsentRepository(uow.session).history(
            customer_ids, channel=channel, purpose=purpose, limit=limit, offset=offset
        )
    return [ConsentHistoryOut.from_row(row) for row in rows]


async def set_contact_preferences(
    uow: UnitOfWork, customer_ids: Sequence[str], data: ContactPreferencesIn, *, actor: str | None = None
) -> ContactPreferencesOut:
    """Replace the customer's contact preferences (they then apply to the whole golden record)."""
    customer_id = customer_ids[0]
    async with uow:
        await require_customer(uow.session, customer_id, for_update=True, writable=True)
        repo = ConsentRepository(uow.session)
        held = await repo.preferences(customer_ids)
        row = next((r for r in held if r.customer_id == customer_id), None)
        if row is None:
            row = ContactPreferencesRow(customer_id=customer_id)
            repo.add(row)
        quiet = data.quiet_hours
        row.do_not_contact = data.do_not_contact
        row.preferred_channel = data.preferred_channel.value if data.preferred_channel else None
        row.preferred_language = data.preferred_language
        row.quiet_hours_start = quiet.start if quiet else None
        row.quiet_hours_end = quiet.end if quiet else None
        row.quiet_hours_time_zone = quiet.time_zone if quiet else None
        row.actor = actor or SYSTEM
        row.updated_at = _strictly_after(datetime.now(UTC), [r.updated_at for r in held])
        try:
            await uow.session.flush()
        except IntegrityError as exc:
            raise Conflict(
                "contact preferences changed concurrently; read them and retry", customer_id=customer_id
            ) from exc
        await uow.commit()
    return ContactPreferencesOut.from_row(row)


async def may_contact(
    session: AsyncSession,
    customer_ids: Sequence[str],
    channel: Channel | str,
    purpose: Purpose | str,
    *,
    at: datetime | None = None,
) -> bool:
    """Whether the customer may be contacted on `channel` for `purpose`: false under do-not-contact or
    without a current grant; with `at`, also false inside the customer's quiet hours.

    Runs in the caller's session and transaction."""
    repo = ConsentRepository(session)
    channel, purpose = Channel(channel), Purpose(purpose)
    consent = domain.current_consents(
        await repo.current_rows(customer_ids, channel=channel, purpose=purpose)
    ).get((channel, purpose))
    preferences = domain.current_preferences(await repo.preferences(customer_ids))
    quiet = None
    if (
        preferences is not None
        and preferences.quiet_hours_start is not None
        and preferences.quiet_hours_end is not None
    ):
        quiet = (
            preferences.quiet_hours_start,
            preferences.quiet_hours_end,
            preferences.quiet_hours_time_zone or "UTC",
        )
    return domain.may_contact_now(
        do_not_contact=preferences is not None and preferences.do_not_contact,
        consent_status=consent.status if consent is not None else None,
        quiet_hours=quiet,
        at=at,
    )


async def export_customer_data(session: AsyncSession, customer_ids: Sequence[str]) -> dict[str, Any]:
    """Right of access: current consents, every recorded choice and the contact preferences, per id."""
    repo = ConsentRepository(session)
    current = await repo.current_rows(customer_ids)
    history = await repo.history(customer_ids)
    preferences = await repo.preferences(customer_ids)
    return {
        "consents": [ConsentOut.model_validate(row).model_dump(mode="json") for row in current],
        "consent_history": [ConsentHistoryOut.from_row(row).model_dump(mode="json") for row in history],
        "contact_preferences": [
            ContactPreferencesOut.from_row(row).model_dump(mode="json") for row in preferences
        ],
    }


async def erase_customer_data(session: AsyncSession, customer_ids: Sequence[str]) -> None:
    """Right to erasure, in the caller's transaction (it commits). See the module docstring for what stays."""
    repo = ConsentRepository(session)
    await repo.forget_evidence(customer_ids)
    now = datetime.now(UTC)
    for customer_id in dict.fromkeys(customer_ids):
        row = await repo.get_preferences(customer_id)
        if row is None:
            row = ContactPreferencesRow(customer_id=customer_id)
            repo.add(row)
        row.do_not_contact = True
        row.preferred_channel = row.preferred_language = row.actor = None
        row.quiet_hours_start = row.quiet_hours_end = None
        row.quiet_hours_time_zone = None
        row.updated_at = now
    await session.flush()
