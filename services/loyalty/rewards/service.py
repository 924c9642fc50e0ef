"""Rewards' use cases: the catalogue, quotes, two-phase redemptions, partners and their accruals.

Every function runs inside the caller's unit of work and never commits; a refusal raises before
anything is committed, so a refused request writes nothing.

Lock order (the same in every path, so concurrent redemptions never deadlock):
redemption row (confirm, cancel, expiry) → the member's ledger accounts (available, then reserved:
the ledger moves them in id order) → the member's lots → the reward row → the member row.
A reservation takes the member's `available` account first (ledger.reserve refuses there if the
balance cannot pay: the member's concurrent redemptions are serialised by it), then counts the
member's redemptions of the reward for the per-member limit (under that lock, so the count sees
every redemption committed before it), then takes a unit of stock with a guarded UPDATE.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from services.loyalty import ledger, programs, segments
from services.loyalty.domain import LoyaltyRuleRefused
from services.loyalty.models import LedgerTransaction, Member, Program
from services.loyalty.rewards import domain
from services.loyalty.rewards.domain import Reason, RuleConflict
from services.loyalty.rewards.models import Partner, Redemption, Reward
from services.loyalty.rewards.schemas import AccrualIn, PartnerIn, RewardIn
from shared.contracts.loyalty import PointsEarned, PointsRedeemed, RewardRedeemed
from shared.errors import Conflict, NotFound, PreconditionFailed
from shared.uow import UnitOfWork

OPEN_STATUSES = ("reserved", "confirmed")  # what counts against a per-member limit


def hold_minutes(program: Program) -> int:
    """How long a reservation holds points: the program's `reservation_hold_minutes` setting."""
    value = (program.settings or {}).get("reservation_hold_minutes", domain.DEFAULT_HOLD_MINUTES)
    return int(value) if isinstance(value, int) and value > 0 else domain.DEFAULT_HOLD_MINUTES


async def member_in(session: AsyncSession, program_id: str, member_id: str) -> Member:
    member = await programs.get_member(session, member_id)
    if member.program_id != program_id:
        raise NotFound(f"member {member_id} is not in program {program_id}", member_id=member_id)
    return member


# --- partners ---------------------------------------------------------------------------------------


async def get_partner(session: AsyncSession, program_id: str, partner_id: str) -> Partner:
    partner = await session.get(Partner, partner_id)
    if partner is None or partner.program_id != program_id:
        raise NotFound(f"partner {partner_id} does not exist in program {program_id}", partner_id=partner_id)
    return partner


async def create_partner(session: AsyncSession, program_id: str, body: PartnerIn) -> Partner:
    await programs.get_program(session, program_id)
    now = datetime.now(UTC)
    partner = Partner(
        id=body.id or str(uuid.uuid4()),
        program_id=program_id,
        name=body.name,
        kind=body.kind,
        status=body.status,
        version=1,
        created_at=now,
        updated_at=now,
    )
    session.add(partner)
    try:
        await session.flush()
    except IntegrityError as exc:
        raise Conflict(f"partner {partner.id} already exists", partner_id=partner.id) from exc
    await ledger.open_accounts(session, "partner", partner.id, ledger.PARTNER_KINDS, program_id)
    return partner


async def partner_balances(session: AsyncSession, partner_id: str) -> tuple[int, int]:
    """Points the partner issued (its liability to members) and points redeemed with it."""
    issued = -await ledger.derived_balance(session, ledger.partner_account(partner_id, "issued"))
    redeemed = await ledger.derived_balance(session, ledger.partner_account(partner_id, "redeemed"))
    return issued, redeemed


async def list_partners(session: AsyncSession, program_id: str) -> list[Partner]:
    await programs.get_program(session, program_id)
    rows = await session.scalars(select(Partner).where(Partner.program_id == program_id).order_by(Partner.id))
    return list(rows.all())


async def accrue(
    uow: UnitOfWork, program_id: str, partner_id: str, body: AccrualIn
) -> tuple[LedgerTransaction, bool]:
    """Credit points a member earned with an accrual partner, once per partner reference: the other
    side is the partner's `issued` account. Returns the transaction and whether it is new."""
    session = uow.session
    program = await programs.get_program(session, program_id)
    partner = await get_partner(session, program_id, partner_id)
    if partner.kind not in ("accrual", "both"):
        raise LoyaltyRuleRefused("partner.kind", f"partner {partner_id} is not an accrual partner")
    if partner.status != "active":
        raise LoyaltyRuleRefused("partner.status", f"partner {partner_id} is {partner.status}")
    member = await member_in(session, program_id, body.member_id)
    programs.require_active(member)
    reference = f"partner:{partner_id}:{body.reference}"
    existing = await ledger.transaction_for(session, reference)
    if existing is not None:
        if existing.member_id != member.id or int(existing.details.get("points", -1)) != body.points:
            raise Conflict(
                f"reference {body.reference} was already credited with other values",
                transaction_id=existing.id,
            )
        return existing, False
    now = datetime.now(UTC)
    try:
        posted = await ledger.earn(
            session,
            program,
            member,
            body.points,
            reference=reference,
            kind="partner_earn",
            partner_id=partner_id,
            reason=body.reason or "partner",
            details={"partner_id": partner_id, "partner_reference": body.reference},
            now=now,
        )
    except IntegrityError as exc:  # the same reference credited concurrently
        raise Conflict(f"reference {body.reference} is being credited; retry to read it") from exc
    await uow.publish(
        PointsEarned(
            customer_id=member.customer_id,
            program_id=program.id,
            transaction_id=posted.id,
            points=body.points,
            pending=program.pending_days > 0,
            reason="partner",
            reference=body.reference,
            balance_after=(await ledger.balances(session, member.id))["available"],
            occurred_at=now,
        )
    )
    return posted.transaction, True


# --- catalogue --------------------------------------------------------------------------------------


async def get_reward(session: AsyncSession, program_id: str, reward_id: str, *, lock: bool = False) -> Reward:
    reward = await session.get(Reward, reward_id, with_for_update=lock)
    if reward is None or reward.program_id != program_id:
        raise NotFound(f"reward {reward_id} does not exist in program {program_id}", reward_id=reward_id)
    return reward


async def _check_partner(session: AsyncSession, program_id: str, partner_id: str | None) -> None:
    if partner_id is None:
        return
    partner = await get_partner(session, program_id, partner_id)
    if partner.kind not in ("redemption", "both"):
        raise LoyaltyRuleRefused("partner.kind", f"partner {partner_id} is not a redemption partner")


async def create_reward(session: AsyncSession, program_id: str, body: RewardIn) -> Reward:
    await programs.get_program(session, program_id)
    await _check_partner(session, program_id, body.partner_id)
    now = datetime.now(UTC)
    reward = Reward(
        id=str(uuid.uuid4()), program_id=program_id, reserved=0, version=1, created_at=now, updated_at=now,
        **body.values(),
    )  # fmt: skip
    session.add(reward)
    await session.flush()
    return reward


async def update_reward(
    session: AsyncSession, program_id: str, reward_id: str, body: RewardIn, *, expected_version: int | None
) -> Reward:
    """Replace a reward's definition. Open reservations keep the price they were given."""
    reward = await get_reward(session, program_id, reward_id, lock=True)
    if expected_version is not None and expected_version != reward.version:
        raise PreconditionFailed(
            f"reward {reward_id} is at version {reward.version}, not {expected_version}",
            version=reward.version,
        )
    await _check_partner(session, program_id, body.partner_id)
    values = body.values()
    if values["stock"] is not None and values["stock"] < reward.reserved:
        raise LoyaltyRuleRefused(
            "reward.stock",
            f"stock cannot go below the {reward.reserved} units held by open reservations",
            reserved=reward.reserved,
        )
    for name, value in values.items():
        setattr(reward, name, value)
    reward.version += 1
    reward.updated_at = datetime.now(UTC)
    await session.flush()
    return reward


async def list_rewards(session: AsyncSession, program_id: str, status: str | None = None) -> list[Reward]:
    await programs.get_program(session, program_id)
    statement = select(Reward).where(Reward.program_id == program_id)
    if status is not None:
        statement = statement.where(Reward.status == status)
    return list((await session.scalars(statement.order_by(Reward.cost_points, Reward.name, Reward.id))).all())


async def redeemed_in_period(
    session: AsyncSession, program: Program, member_id: str, reward: Reward, now: datetime
) -> int:
    """The member's reserved or confirmed redemptions of the reward in the limit's current period."""
    if reward.per_member_limit is None:
        return 0
    statement = select(func.count()).where(
        Redemption.member_id == member_id,
        Redemption.reward_id == reward.id,
        Redemption.status.in_(OPEN_STATUSES),
    )
    start = domain.period_start(reward.limit_period, now, program.timezone)
    if start is not None:
        statement = statement.where(Redemption.reserved_at >= start)
    return int(await session.scalar(statement) or 0)


async def situation(
    session: AsyncSession,
    program: Program,
    member: Member,
    reward: Reward | None,
    now: datetime,
    *,
    member_segments: frozenset[str] | None = None,
    available: int | None = None,
) -> domain.Situation:
    if member_segments is None:
        member_segments = frozenset(await segments.of(session, member.customer_id))
    if available is None:
        available = (await ledger.balances(session, member.id))["available"]
    count = 0 if reward is None else await redeemed_in_period(session, program, member.id, reward, now)
    return domain.Situation(
        now=now,
        timezone=program.timezone,
        member_status=member.status,
        member_tier=member.tier,
        segments=member_segments,
        available_points=available,
        redeemed_in_period=count,
    )


async def partner_reasons(session: AsyncSession, reward: Reward) -> list[Reason]:
    if reward.partner_id is None:
        return []
    partner = await session.get(Partner, reward.partner_id)
    if partner is None or partner.status != "active":
        return [Reason("partner.status", "the partner honouring this reward is not active")]
    return []


async def evaluate(
    session: AsyncSession,
    program: Program,
    member: Member,
    reward: Reward,
    now: datetime,
    *,
    member_segments: frozenset[str] | None = None,
    available: int | None = None,
) -> tuple[domain.Situation, list[Reason]]:
    sit = await situation(
        session, program, member, reward, now, member_segments=member_segments, available=available
    )
    return sit, domain.reasons(reward, sit) + await partner_reasons(session, reward)


async def catalogue(
    session: AsyncSession, program_id: str, member_id: str, now: datetime | None = None
) -> tuple[Program, Member, int, list[tuple[Reward, list[Reason]]]]:
    """The program's active rewards as the member sees them, each with the reasons it cannot be
    redeemed now (none: redeemable)."""
    now = now or datetime.now(UTC)
    program = await programs.get_program(session, program_id)
    member = await member_in(session, program_id, member_id)
    member_segments = frozenset(await segments.of(session, member.customer_id))
    available = (await ledger.balances(session, member.id))["available"]
    out = []
    for reward in await list_rewards(session, program_id, "active"):
        _, why = await evaluate(
            session, program, member, reward, now, member_segments=member_segments, available=available
        )
        out.append((reward, why))
    return program, member, available, out


# --- redemptions ------------------------------------------------------------------------------------


async def get_redemption(session: AsyncSession, redemption_id: str, *, lock: bool = False) -> Redemption:
    redemption = await session.get(Redemption, redemption_id, with_for_update=lock)
    if redemption is None:
        raise NotFound(f"redemption {redemption_id} does not exist", redemption_id=redemption_id)
    return redemption


async def member_redemptions(
    session: AsyncSession, program_id: str, member_id: str, status: str | None = None
) -> list[Redemption]:
    await member_in(session, program_id, member_id)
    statement = select(Redemption).where(Redemption.member_id == member_id)
    if status is not None:
        statement = statement.where(Redemption.status == status)
    rows = await session.scalars(statement.order_by(Redemption.reserved_at.desc(), Redemption.id))
    return list(rows.all())


async def _move_stock(session: AsyncSession, reward: Reward, *, confirm: bool) -> None:
    """A held unit is consumed (confirm: stock and reserved down by one) or given back (reserved down)."""
    values: dict[str, object] = {"reserved": Reward.reserved - 1}
    if confirm:
        values["stock"] = Reward.stock - 1  # NULL (unlimited) stays NULL
    row = (
        await session.execute(
            update(Reward)
            .where(Reward.id == reward.id)
            .values(**values)
            .returning(Reward.stock, Reward.reserved)
            .execution_options(synchronize_session=False)
        )
    ).one()
    set_committed_value(reward, "stock", row.stock)
    set_committed_value(reward, "reserved", row.reserved)


async def reserve(
    uow: UnitOfWork,
    program_id: str,
    member_id: str,
    reward_id: str,
    *,
    now: datetime | None = None,
) -> Redemption:
    """Hold the reward's points (available → reserved, lots consumed) and one unit of its stock until
    `expires_at`. Refused, with nothing written, if any rule of the reward refuses the member."""
    session = uow.session
    now = now or datetime.now(UTC)
    program = await programs.get_program(session, program_id)
    member = await member_in(session, program_id, member_id)
    reward = await get_reward(session, program_id, reward_id)
    # Everything that needs no lock first (a clear reason, no waiting on a lock to hear it).
    _, why = await evaluate(session, program, member, reward, now)
    why = [r for r in why if r.rule != "balance.insufficient"]  # the ledger refuses that under the lock
    if why:
        raise why[0].refusal()
    redemption_id = str(uuid.uuid4())
    # The member's lock: the ledger moves the available account first and refuses if it cannot pay.
    posted = await ledger.reserve(
        session, program, member, reward.cost_points, reference=f"redemption:{redemption_id}:reserve", now=now
    )
    # Under that lock, every earlier redemption of this member is committed and visible: count again.
    if reward.per_member_limit is not None:
        count = await redeemed_in_period(session, program, member.id, reward, now)
        if count >= reward.per_member_limit:
            raise domain.limit_reached(reward).refusal()
    # One unit of stock, never oversold: the guard is evaluated again after any concurrent update.
    row = (
        await session.execute(
            update(Reward)
            .where(Reward.id == reward.id, or_(Reward.stock.is_(None), Reward.stock - Reward.reserved > 0))
            .values(reserved=Reward.reserved + 1)
            .returning(Reward.stock, Reward.reserved)
            .execution_options(synchronize_session=False)
        )
    ).first()
    if row is None:
        raise RuleConflict("reward.out_of_stock", f"reward {reward.id} is out of stock")
    set_committed_value(reward, "stock", row.stock)
    set_committed_value(reward, "reserved", row.reserved)
    redemption = Redemption(
        id=redemption_id,
        reward_id=reward.id,
        member_id=member.id,
        program_id=program.id,
        partner_id=reward.partner_id,
        points=reward.cost_points,
        cash_minor=reward.cash_minor,
        fees_minor=reward.fees_minor,
        currency=reward.currency,
        payment_reference=None,
        status="reserved",
        reservation_transaction_id=posted.id,
        reserved_at=now,
        expires_at=now + timedelta(minutes=hold_minutes(program)),
        version=1,
    )
    session.add(redemption)
    await session.flush()
    return redemption


async def _voucher_code(session: AsyncSession) -> str:
    for _ in range(8):
        code = domain.new_voucher_code()
        if await session.scalar(select(Redemption.id).where(Redemption.voucher_code == code)) is None:
            return code
    raise Conflict("could not draw a free voucher code; retry")  # 60 random bits: never in practice


def _settled(redemption: Redemption) -> RuleConflict:
    if redemption.status == "expired":
        return RuleConflict(
            "redemption.expired",
            f"redemption {redemption.id} expired at {redemption.expires_at.isoformat()}; its points are back",
        )
    return RuleConflict(
        f"redemption.{redemption.status}", f"redemption {redemption.id} is already {redemption.status}"
    )


async def confirm(
    uow: UnitOfWork,
    redemption_id: str,
    *,
    payment_reference: str | None = None,
    now: datetime | None = None,
    redemption: Redemption | None = None,
) -> Redemption:
    """Spend the held points (reserved → the program's, or the partner's, redeemed account), consume
    the held unit of stock, issue a voucher code (every kind but an upgrade), and announce
    `points_redeemed` and `reward_redeemed` in the same transaction."""
    session = uow.session
    now = now or datetime.now(UTC)
    redemption = redemption or await get_redemption(session, redemption_id, lock=True)
    if redemption.status != "reserved":
        raise _settled(redemption)
    if now >= redemption.expires_at:
        raise RuleConflict(
            "redemption.expired",
            f"the reservation expired at {redemption.expires_at.isoformat()}; redeem again",
            expires_at=redemption.expires_at.isoformat(),
        )
    if redemption.cash_minor + redemption.fees_minor > 0 and not payment_reference:
        raise LoyaltyRuleRefused(
            "redemption.payment_required",
            f"{redemption.cash_minor + redemption.fees_minor} {redemption.currency} (minor units) are due: "
            "give the payment_reference",
        )
    program = await programs.get_program(session, redemption.program_id)
    member = await programs.get_member(session, redemption.member_id)
    reward = await get_reward(session, redemption.program_id, redemption.reward_id)
    reservation = await session.get(LedgerTransaction, redemption.reservation_transaction_id)
    assert reservation is not None
    to_account = ledger.partner_account(redemption.partner_id, "redeemed") if redemption.partner_id else None
    posted = await ledger.confirm_reservation(
        session, program, member, reservation, to_account=to_account, now=now
    )
    await _move_stock(session, reward, confirm=True)
    redemption.status = "confirmed"
    redemption.confirm_transaction_id = posted.id
    redemption.confirmed_at = now
    redemption.payment_reference = payment_reference
    if reward.kind in domain.CODED_KINDS:
        redemption.voucher_code = await _voucher_code(session)
    redemption.version += 1
    await session.flush()
    balance = (await ledger.balances(session, member.id))["available"]
    await uow.publish(
        PointsRedeemed(
            customer_id=member.customer_id,
            program_id=program.id,
            transaction_id=posted.id,
            points=redemption.points,
            reward_id=reward.id,
            reference=redemption.id,
            balance_after=balance,
            occurred_at=now,
        )
    )
    await uow.publish(
        RewardRedeemed(
            customer_id=member.customer_id,
            program_id=program.id,
            redemption_id=redemption.id,
            reward_id=reward.id,
            reward_kind=reward.kind,
            points=redemption.points,
            cash_minor=redemption.cash_minor,
            currency=redemption.currency,
            voucher_code=redemption.voucher_code,
            redeemed_at=now,
        )
    )
    return redemption


async def cancel(
    uow: UnitOfWork,
    redemption_id: str,
    *,
    reason: str | None = None,
    now: datetime | None = None,
    status: str = "cancelled",
    redemption: Redemption | None = None,
) -> Redemption:
    """Give the held points back into the lots they came from and the held unit back to the stock."""
    session = uow.session
    now = now or datetime.now(UTC)
    redemption = redemption or await get_redemption(session, redemption_id, lock=True)
    if redemption.status != "reserved":
        raise _settled(redemption)
    program = await programs.get_program(session, redemption.program_id)
    member = await programs.get_member(session, redemption.member_id)
    reward = await get_reward(session, redemption.program_id, redemption.reward_id)
    reservation = await session.get(LedgerTransaction, redemption.reservation_transaction_id)
    assert reservation is not None
    posted = await ledger.cancel_reservation(
        session, program, member, reservation, reason=reason or status, now=now
    )
    await _move_stock(session, reward, confirm=False)
    redemption.status = status
    redemption.cancel_transaction_id = posted.id
    redemption.cancelled_at = now
    redemption.reason = reason or status
    redemption.version += 1
    await session.flush()
    return redemption


async def redeem(
    uow: UnitOfWork,
    program_id: str,
    member_id: str,
    reward_id: str,
    *,
    confirm_now: bool,
    payment_reference: str | None = None,
    now: datetime | None = None,
) -> Redemption:
    """Reserve, and with `confirm_now` confirm in the same transaction (redeem now)."""
    now = now or datetime.now(UTC)
    redemption = await reserve(uow, program_id, member_id, reward_id, now=now)
    if confirm_now:
        redemption = await confirm(
            uow, redemption.id, payment_reference=payment_reference, now=now, redemption=redemption
        )
    return redemption


async def due_reservations(session: AsyncSession, now: datetime, *, limit: int) -> Sequence[str]:
    rows = await session.scalars(
        select(Redemption.id)
        .where(Redemption.status == "reserved", Redemption.expires_at <= now)
        .order_by(Redemption.expires_at, Redemption.id)
        .limit(limit)
    )
    return rows.all()


async def expire_one(uow: UnitOfWork, redemption_id: str, now: datetime) -> bool:
    """Expire one overdue reservation in the caller's transaction; False if another worker holds it
    or it was settled meanwhile."""
    redemption = await uow.session.scalar(
        select(Redemption)
        .where(Redemption.id == redemption_id, Redemption.status == "reserved", Redemption.expires_at <= now)
        .with_for_update(skip_locked=True)
    )
    if redemption is None:
        return False
    await cancel(uow, redemption_id, reason="expired", now=now, status="expired", redemption=redemption)
    return True
