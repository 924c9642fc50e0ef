"""Erasure: when identity erases a customer, loyalty stops holding their personal data.

The ledger is a financial record and stays as it is: transactions, entries and lots keep the
member and customer ids (pseudonymous keys, which identity no longer resolves to a person), so the
books still balance and `crm loyalty check` still proves them. What identifies or describes the
person goes: the card number and the referral code are replaced by random tokens (they stay unique,
and a token is no valid card number, so the card no longer finds anyone), the birth date (when the
column exists) is cleared, the member leaves their household, stored HTTP replies that showed the
card or code are deleted, the customer's segment memberships are forgotten, and the member's status
becomes `erased` (no more earning, spending or transfers). Idempotent: an erased member is skipped.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import String, cast, delete, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.loyalty import households, known_customers
from services.loyalty.models import IDEMPOTENCY, Member
from services.loyalty.segments import CustomerSegment

ERASED = "erased"


@dataclass(slots=True)
class ErasureResult:
    members: list[str] = field(default_factory=list)  # members scrubbed by this call


def _token(length: int) -> str:
    return ("E" + uuid.uuid4().hex.upper())[:length]


async def erase_customer(
    session: AsyncSession, customer_ids: list[str], *, erased_at: datetime | None = None
) -> ErasureResult:
    """Scrub the memberships of `customer_ids` (the customer and every id merged into it)."""
    erased_at = erased_at or datetime.now(UTC)
    ids = list(dict.fromkeys(customer_ids))
    result = ErasureResult()
    members = (
        await session.scalars(
            select(Member).where(Member.customer_id.in_(ids)).order_by(Member.id).with_for_update()
        )
    ).all()
    has_birth_date = "birth_date" in Member.__table__.c
    for member in members:
        if member.status == ERASED:
            continue
        shown = [member.card_number, member.referral_code]
        await households.leave(session, member)
        member.card_number = _token(24)
        member.referral_code = _token(16)
        member.card_status = ERASED
        member.status = ERASED
        if has_birth_date:
            setattr(member, "birth_date", None)  # noqa: B010  (a column another migration adds)
        member.version += 1
        await session.flush()
        response = cast(IDEMPOTENCY.c.response, String)
        await session.execute(delete(IDEMPOTENCY).where(or_(*(response.contains(value) for value in shown))))
        result.members.append(member.id)
    await session.execute(delete(CustomerSegment).where(CustomerSegment.customer_id.in_(ids)))
    await known_customers.erased(session, ids, erased_at)
    await session.flush()
    return result
