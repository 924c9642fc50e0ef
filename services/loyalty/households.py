"""Households: members of one program who pool their points (a family, a flat share).

A household has an owner (a member, counted in `max_members`) and its members (`Member.household_id`);
a member belongs to at most one household. Its pooled balance is the sum of its members' available
points. With pooling enabled, points move between members of the household by a ledger transfer of
kind `pool_transfer` — free of the ordinary transfer limits, and keeping the points' expiry dates.

Changes to a household's membership lock the household row first, then the member, so concurrent
joins cannot overfill it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.loyalty import ledger, programs
from services.loyalty.domain import LoyaltyRuleRefused
from services.loyalty.models import Account, Member, Program
from services.loyalty.tables import Household
from shared.errors import Conflict, NotFound

POOL_TRANSFER = "pool_transfer"


@dataclass(frozen=True, slots=True)
class HouseholdMember:
    member_id: str
    customer_id: str
    status: str
    available: int
    owner: bool


@dataclass(frozen=True, slots=True)
class HouseholdView:
    household: Household
    members: list[HouseholdMember]

    @property
    def pooled_balance(self) -> int:
        return sum(m.available for m in self.members)


async def get_household(
    session: AsyncSession, program_id: str, household_id: str, *, lock: bool = False
) -> Household:
    household = await session.get(Household, household_id, with_for_update=lock)
    if household is None or household.program_id != program_id:
        raise NotFound(
            f"household {household_id} does not exist in program {program_id}", household_id=household_id
        )
    return household


async def _member_of_program(
    session: AsyncSession, program_id: str, member_id: str, *, lock: bool = False
) -> Member:
    member = await programs.get_member(session, member_id, lock=lock)
    if member.program_id != program_id:
        raise NotFound(f"member {member_id} is not in program {program_id}", member_id=member_id)
    return member


async def _count(session: AsyncSession, household_id: str) -> int:
    return int(
        await session.scalar(
            select(func.count()).select_from(Member).where(Member.household_id == household_id)
        )
        or 0
    )


def _join(member: Member, household: Household) -> None:
    if member.household_id == household.id:
        return
    if member.household_id is not None:
        raise Conflict(
            f"member {member.id} already belongs to household {member.household_id}",
            member_id=member.id,
            household_id=member.household_id,
        )
    programs.require_active(member)
    member.household_id = household.id
    member.version += 1


async def create(
    session: AsyncSession,
    program: Program,
    *,
    name: str,
    owner_member_id: str,
    pooling_enabled: bool = True,
    max_members: int = 6,
    now: datetime | None = None,
) -> Household:
    """A new household with its owner as first member (who must not belong to another one)."""
    owner = await _member_of_program(session, program.id, owner_member_id, lock=True)
    now = now or datetime.now(UTC)
    household = Household(
        id=str(uuid.uuid4()),
        program_id=program.id,
        name=name,
        owner_member_id=owner.id,
        pooling_enabled=pooling_enabled,
        max_members=max_members,
        created_at=now,
        updated_at=now,
        version=1,
    )
    _join(owner, household)
    session.add(household)
    await session.flush()
    return household


async def add_member(
    session: AsyncSession, program_id: str, household_id: str, member_id: str
) -> tuple[Household, bool]:
    """Add a member (once: adding them again changes nothing). Returns whether they were added."""
    household = await get_household(session, program_id, household_id, lock=True)
    member = await _member_of_program(session, program_id, member_id, lock=True)
    if member.household_id == household.id:
        return household, False
    if await _count(session, household.id) >= household.max_members:
        raise LoyaltyRuleRefused(
            "household.full",
            f"household {household.id} already has its {household.max_members} members",
            max_members=household.max_members,
        )
    _join(member, household)
    household.updated_at = datetime.now(UTC)
    household.version += 1
    await session.flush()
    return household, True


async def remove_member(
    session: AsyncSession, program_id: str, household_id: str, member_id: str
) -> Household:
    """Take a member out. The owner leaves last; when they do, the household is empty (and stays so)."""
    household = await get_household(session, program_id, household_id, lock=True)
    member = await _member_of_program(session, program_id, member_id, lock=True)
    if member.household_id != household.id:
        raise NotFound(f"member {member_id} is not in household {household_id}", member_id=member_id)
    if member.id == household.owner_member_id and await _count(session, household.id) > 1:
        raise LoyaltyRuleRefused("household.owner", "the owner leaves last: remove the other members first")
    member.household_id = None
    member.version += 1
    household.updated_at = datetime.now(UTC)
    household.version += 1
    await session.flush()
    return household


async def leave(session: AsyncSession, member: Member) -> None:
    """A member leaves their household whatever their role (erasure): if they owned it, the longest
    enrolled remaining member becomes the owner."""
    if member.household_id is None:
        return
    household = await session.get(Household, member.household_id, with_for_update=True)
    member.household_id = None
    member.version += 1
    if household is None:
        return
    await session.flush()
    if household.owner_member_id == member.id:
        successor = await session.scalar(
            select(Member.id)
            .where(Member.household_id == household.id)
            .order_by(Member.enrolled_at, Member.id)
            .limit(1)
        )
        if successor is not None:
            household.owner_member_id = successor
    household.updated_at = datetime.now(UTC)
    household.version += 1
    await session.flush()


async def view(session: AsyncSession, household: Household) -> HouseholdView:
    rows = (
        await session.execute(
            select(Member.id, Member.customer_id, Member.status, func.coalesce(Account.balance, 0))
            .outerjoin(
                Account,
                (Account.owner_kind == "member")
                & (Account.owner_id == Member.id)
                & (Account.kind == "available"),
            )
            .where(Member.household_id == household.id)
            .order_by(Member.id != household.owner_member_id, Member.enrolled_at, Member.id)
        )
    ).all()
    return HouseholdView(
        household,
        [HouseholdMember(m, c, s, int(b), m == household.owner_member_id) for m, c, s, b in rows],
    )


async def pool_transfer(
    session: AsyncSession,
    program: Program,
    household_id: str,
    *,
    from_member_id: str,
    to_member_id: str,
    points: int,
    reference: str,
    reason: str | None = None,
    actor: str | None = None,
    now: datetime | None = None,
) -> ledger.Posted:
    """Move points between two members of a household with pooling enabled (no transfer limits)."""
    household = await get_household(session, program.id, household_id)
    if not household.pooling_enabled:
        raise LoyaltyRuleRefused("household.pooling", f"household {household.id} does not pool points")
    sender = await _member_of_program(session, program.id, from_member_id)
    receiver = await _member_of_program(session, program.id, to_member_id)
    for member in (sender, receiver):
        if member.household_id != household.id:
            raise LoyaltyRuleRefused(
                "household.member", f"member {member.id} is not in household {household.id}"
            )
        programs.require_active(member)
    return await ledger.transfer(
        session,
        program,
        sender,
        receiver,
        points,
        reference=reference,
        kind=POOL_TRANSFER,
        reason=reason or f"household {household.id}",
        actor=actor,
        now=now,
    )
