"""Programs and their members: creating programs, enrolment (card number, referral code), card and
member status. Every function runs inside the caller's transaction."""

from __future__ import annotations

import secrets
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.loyalty import ledger
from services.loyalty.domain import EXPIRY_POLICIES, NEGATIVE_POLICIES, LoyaltyRuleRefused
from services.loyalty.models import Member, Program
from shared.errors import Conflict, InvalidInput, NotFound

DEFAULT_PROGRAM = "default"
_REFERRAL_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: read aloud and typed safely


def luhn_digit(digits: str) -> str:
    """The Luhn check digit that makes `digits + digit` pass the card-number checksum."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        n = int(ch)
        if i % 2 == 0:
            n *= 2
            if n > 9:
                n -= 9
        total += n
    return str((10 - total % 10) % 10)


def luhn_valid(number: str) -> bool:
    return number.isdigit() and len(number) > 1 and luhn_digit(number[:-1]) == number[-1]


def new_card_number(prefix: str = "7") -> str:
    """A 16-digit card number with a Luhn check digit (typos on a till are caught before lookup)."""
    body = prefix + "".join(secrets.choice("0123456789") for _ in range(15 - len(prefix)))
    return body + luhn_digit(body)


def new_referral_code() -> str:
    return "".join(secrets.choice(_REFERRAL_ALPHABET) for _ in range(8))


def validate_policies(values: dict[str, Any]) -> None:
    policy = values.get("expiry_policy", "never")
    if policy not in EXPIRY_POLICIES:
        raise InvalidInput("body.expiry_policy", f"must be one of {', '.join(EXPIRY_POLICIES)}")
    period = values.get("expiry_period")
    if policy in ("after_days", "inactivity") and not (isinstance(period, int) and period > 0):
        raise InvalidInput("body.expiry_period", f"a positive number of days is needed for {policy}")
    if policy in ("end_of_month", "end_of_year") and not (isinstance(period, int) and period >= 0):
        raise InvalidInput("body.expiry_period", f"0 or more {policy[7:]}s ahead is needed for {policy}")
    negative = values.get("negative_policy", "never")
    if negative not in NEGATIVE_POLICIES:
        raise InvalidInput("body.negative_policy", f"must be one of {', '.join(NEGATIVE_POLICIES)}")
    if negative == "within_limit" and int(values.get("negative_limit") or 0) <= 0:
        raise InvalidInput("body.negative_limit", "a positive limit is needed for within_limit")


async def create_program(session: AsyncSession, values: dict[str, Any]) -> Program:
    validate_policies(values)
    now = datetime.now(UTC)
    program = Program(**values, created_at=now, updated_at=now, version=1)
    session.add(program)
    try:
        await session.flush()
    except IntegrityError as exc:
        raise Conflict(f"program {values['id']} already exists", program_id=values["id"]) from exc
    await ledger.open_accounts(session, "program", program.id, ledger.PROGRAM_KINDS, program.id)
    return program


async def ensure_default_program(session: AsyncSession, *, auto_enrol: bool = True) -> Program:
    """The program every purchase earns in unless configured otherwise (created on first use)."""
    program = await session.get(Program, DEFAULT_PROGRAM)
    if program is not None:
        return program
    return await create_program(
        session,
        {
            "id": DEFAULT_PROGRAM,
            "name": "Loyalty program",
            "timezone": "UTC",
            "points_per_unit": 1,
            "pending_days": 0,
            "expiry_policy": "never",
            "expiry_period": None,
            "negative_policy": "never",
            "negative_limit": 0,
            "tiers": [],
            "settings": {"auto_enrol": auto_enrol},
        },
    )


async def get_program(session: AsyncSession, program_id: str) -> Program:
    program = await session.get(Program, program_id)
    if program is None:
        raise NotFound(f"program {program_id} does not exist", program_id=program_id)
    return program


async def enrol(
    session: AsyncSession,
    program: Program,
    customer_id: str,
    *,
    referred_by: Member | None = None,
    now: datetime | None = None,
) -> tuple[Member, bool]:
    """Make the customer a member (once per program). Returns the member and whether it is new."""
    if program.status != "active":
        raise LoyaltyRuleRefused("program.closed", f"program {program.id} is closed to new members")
    existing = await ledger.member_of(session, program.id, customer_id)
    if existing is not None:
        return existing, False
    if referred_by is not None and referred_by.customer_id == customer_id:
        raise LoyaltyRuleRefused("referral.self", "a customer cannot refer themselves")
    now = now or datetime.now(UTC)
    member = Member(
        id=str(uuid.uuid4()),
        program_id=program.id,
        customer_id=customer_id,
        card_number=new_card_number(),
        card_status="active",
        status="active",
        tier=None,
        tier_since=None,
        referral_code=new_referral_code(),
        referred_by=referred_by.id if referred_by else None,
        household_id=None,
        enrolled_at=now,
        last_activity_at=now,
        version=1,
    )
    async with session.begin_nested():
        session.add(member)
        try:
            await session.flush()
        except IntegrityError:
            member = None  # type: ignore[assignment]
    if member is None:  # enrolled concurrently (or a one-in-10^15 card collision): read what won
        found = await ledger.member_of(session, program.id, customer_id)
        if found is None:
            raise Conflict("enrolment collided; retry", customer_id=customer_id)
        return found, False
    await ledger.open_accounts(session, "member", member.id, ledger.MEMBER_KINDS, program.id)
    return member, True


async def get_member(session: AsyncSession, member_id: str, *, lock: bool = False) -> Member:
    member = await session.get(Member, member_id, with_for_update=lock)
    if member is None:
        raise NotFound(f"member {member_id} does not exist", member_id=member_id)
    return member


async def member_by_card(session: AsyncSession, card_number: str) -> Member:
    member = await session.scalar(select(Member).where(Member.card_number == card_number))
    if member is None:
        raise NotFound(f"no member has card {card_number}", card_number=card_number)
    return member


async def member_for_customer(session: AsyncSession, program_id: str, customer_id: str) -> Member:
    member = await ledger.member_of(session, program_id, customer_id)
    if member is None:
        raise NotFound(
            f"customer {customer_id} is not a member of program {program_id}",
            customer_id=customer_id,
            program_id=program_id,
        )
    return member


def require_active(member: Member) -> None:
    if member.status != "active":
        raise LoyaltyRuleRefused("member.status", f"member {member.id} is {member.status}")
