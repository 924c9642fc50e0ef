"""Loyalty's use cases driven by events: purchases earn, refunds claw back, merges move memberships.

Each handler runs inside the consumer's transaction (the caller commits) and is idempotent: every
ledger transaction has a unique `reference` derived from the event (the purchase id, the refund id),
so a redelivered event finds its transaction and does nothing."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.loyalty import earning, known_customers, ledger, programs
from services.loyalty.domain import Posting, clawback_due
from services.loyalty.models import LedgerTransaction, Lot, Member, Program
from services.loyalty.rules import service as rules
from services.loyalty.rules import tiers
from shared.contracts.identity import CustomerMerged
from shared.contracts.interactions import PurchaseRecorded, PurchaseRefunded
from shared.contracts.loyalty import MemberEnrolled, PointsDeducted, PointsEarned
from shared.uow import UnitOfWork


def purchase_reference(program_id: str, purchase_id: str) -> str:
    return f"purchase:{program_id}:{purchase_id}"


def purchase_facts(purchase: PurchaseRecorded) -> earning.PurchaseFacts:
    return earning.PurchaseFacts(
        purchase_id=purchase.purchase_id,
        customer_id=purchase.customer_id,
        occurred_at=purchase.occurred_at,
        currency=purchase.currency.upper(),
        total_minor=purchase.total_minor,
        channel=purchase.channel,
        lines=tuple(
            earning.PurchaseLineFacts(line.sku, line.category, line.quantity, line.unit_price_minor)
            for line in purchase.lines
        ),
    )


async def programs_for(uow: UnitOfWork, customer_id: str) -> list[tuple[Program, Member | None]]:
    """The programs a customer's purchase earns in: every active program they belong to, plus those
    that enrol buyers automatically."""
    session = uow.session
    query = (
        select(Program, Member)
        .outerjoin(Member, (Member.program_id == Program.id) & (Member.customer_id == customer_id))
        .where(Program.status == "active")
        .order_by(Program.id)
    )
    rows = (await session.execute(query)).all()
    # Only when the default program is not among the active ones: it may not exist yet.
    if (
        not any(program.id == programs.DEFAULT_PROGRAM for program, _ in rows)
        and (await programs.ensure_default_program(session)).status == "active"
    ):
        rows = (await session.execute(query)).all()
    return [
        (program, member)
        for program, member in rows
        if member is not None or bool((program.settings or {}).get("auto_enrol"))
    ]


async def enrol_and_announce(
    uow: UnitOfWork,
    program: Program,
    customer_id: str,
    *,
    referred_by: Member | None = None,
    birth_date: date | None = None,
    now: datetime | None = None,
) -> tuple[Member, bool]:
    """Enrol (once) and, for a new member, publish `member_enrolled` and grant the enrolment bonus
    (the program's `event_bonus` rules for `enrolment`, once per member)."""
    member, created = await programs.enrol(
        uow.session, program, customer_id, referred_by=referred_by, now=now
    )
    if created and birth_date is not None:
        member.birth_date = birth_date
        await uow.session.flush()
    if created:
        await uow.publish(
            MemberEnrolled(
                customer_id=customer_id,
                program_id=program.id,
                member_id=member.id,
                card_number=member.card_number,
                referred_by_customer_id=referred_by.customer_id if referred_by else None,
                enrolled_at=member.enrolled_at,
            )
        )
        await rules.grant_event_bonus(uow, program, member, "enrolment", member.id, now=member.enrolled_at)
    return member, created


async def _available_after(session: AsyncSession, member: Member, posted: ledger.Posted) -> int:
    """The member's available balance after a posting: the one it returned when it moved the account."""
    account = ledger.member_account(member.id)
    if account in posted.balances:
        return posted.balances[account]
    return (await ledger.balances(session, member.id))["available"]


@dataclass(slots=True)
class _Prefetched:
    """What a run of purchases looked up at once for `earn_for_purchase`: resolved customer ids, the
    programs each customer's purchases earn in (with their memberships), and the purchase references
    known to have no ledger transaction yet."""

    customers: dict[str, str]
    programs: dict[str, list[tuple[Program, Member | None]]]
    absent: set[str]


async def _prefetch(uow: UnitOfWork, purchases: Sequence[PurchaseRecorded]) -> _Prefetched:
    session = uow.session
    customers = await known_customers.resolve_many(session, [p.customer_id for p in purchases])
    ids = sorted(set(customers.values()))
    query = (
        select(Program, Member)
        .outerjoin(Member, (Member.program_id == Program.id) & Member.customer_id.in_(ids))
        .where(Program.status == "active")
        .order_by(Program.id)
    )
    rows = (await session.execute(query)).all()
    if not any(program.id == programs.DEFAULT_PROGRAM for program, _ in rows):
        await programs_for(uow, ids[0])  # creates the default program if it is missing
        rows = (await session.execute(query)).all()
    active = list(dict.fromkeys(program for program, _ in rows))
    memberships = {(m.customer_id, program.id): m for program, m in rows if m is not None}
    earning_in: dict[str, list[tuple[Program, Member | None]]] = {}
    for customer_id in ids:
        earning_in[customer_id] = [
            (program, memberships.get((customer_id, program.id)))
            for program in active
            if (customer_id, program.id) in memberships or bool((program.settings or {}).get("auto_enrol"))
        ]
    references = {
        purchase_reference(program.id, p.purchase_id)
        for p in purchases
        for program, _ in earning_in[customers[p.customer_id]]
    }
    existing = set(
        await session.scalars(
            select(LedgerTransaction.reference).where(LedgerTransaction.reference.in_(sorted(references)))
        )
    )
    return _Prefetched(customers, earning_in, references - existing)


async def earn_for_purchases(uow: UnitOfWork, purchases: Sequence[PurchaseRecorded]) -> int:
    """`earn_for_purchase` for a run of purchases (the consumer's batch), one after the other with the
    same results, but with what each would look up first — its customer (resolved and locked), its
    programs and memberships, whether it earned already — looked up for all of them in three
    statements, and their events written to the outbox in one."""
    earning_ones = [p for p in purchases if p.payment_status != "failed"]
    if not earning_ones:
        return 0
    known = await _prefetch(uow, earning_ones)
    total = 0
    async with uow.deferred_publishing(), ledger.write_behind(uow.session):
        for purchase in earning_ones:
            total += await earn_for_purchase(uow, purchase, known=known)
    return total


def _with_balance(
    earned: functools.partial[PointsEarned], posted: ledger.Posted, account: str
) -> PointsEarned:
    return earned(balance_after=posted.balances[account])


async def _behind(uow: UnitOfWork, program: Program, member: Member | None, fresh: bool) -> bool:
    """Whether this earn may wait in the run's write-behind ledger buffer: nothing on its way reads what
    the held credits write — no ledger lookup (`fresh`: known absent), no enrolment, no tier to
    requalify, no referral to complete, no cap counting what was earned, no pending window (whose
    `balance_after` is read back) — so it ends exactly as if posted at once."""
    if ledger.buffered(uow.session) is None or not fresh or member is None or member.status != "active":
        return False
    if program.tiers or program.pending_days > 0 or member.referred_by is not None:
        return False
    return not any(rule.kind == "cap" for rule in await rules.load_rules(uow.session, program.id))


async def earn_for_purchase(
    uow: UnitOfWork,
    purchase: PurchaseRecorded,
    *,
    now: datetime | None = None,
    known: _Prefetched | None = None,
) -> int:
    """Credit the purchase's points in each program, once per purchase id however often the event
    arrives. Failed payments earn nothing. Returns the points credited (all programs). After earning:
    a referred member's first earning purchase completes the referral, and the member's tier is
    re-qualified (upgrades at once)."""
    if purchase.payment_status == "failed":
        return 0
    if purchase.total_minor < 0:
        raise ValueError("a purchase total cannot be negative")
    session = uow.session
    total = 0
    if known is not None:
        customer_id = known.customers[purchase.customer_id]
        earning_in = known.programs[customer_id]
    else:
        customer_id = await known_customers.resolve(session, purchase.customer_id, lock=True)
        earning_in = await programs_for(uow, customer_id)
    for index, (program, member) in enumerate(earning_in):
        reference = purchase_reference(program.id, purchase.purchase_id)
        fresh = known is not None and reference in known.absent
        behind = await _behind(uow, program, member, fresh)
        if not behind:
            await ledger.flush_buffered(session)  # what follows may read what the held credits write
        if fresh:
            assert known is not None
            known.absent.discard(reference)  # from now on (a purchase id twice), ask the database
        elif await ledger.transaction_for(session, reference) is not None:
            continue
        if member is None:
            member, _ = await enrol_and_announce(uow, program, customer_id, now=now)
            earning_in[index] = (program, member)  # the run's next purchases of this customer
        if member.status != "active":
            continue
        outcome = await earning.evaluate(session, program, member, purchase_facts(purchase))
        if outcome.points <= 0 and outcome.qualifying <= 0:
            continue
        at = now or datetime.now(UTC)
        posted = await ledger.earn(
            session,
            program,
            member,
            outcome.points,
            qualifying=outcome.qualifying,
            reference=reference,
            reason="purchase",
            details={
                "purchase_id": purchase.purchase_id,
                "total_minor": purchase.total_minor,
                "currency": purchase.currency.upper(),
                **outcome.details(),
            },
            now=at,
            behind=behind,
        )
        total += outcome.points
        if outcome.points > 0:
            earned = functools.partial(
                PointsEarned,
                customer_id=customer_id,
                program_id=program.id,
                transaction_id=posted.id,
                points=outcome.points,
                qualifying=outcome.qualifying,
                pending=program.pending_days > 0,
                reason="purchase",
                reference=purchase.purchase_id,
                occurred_at=at,
            )
            if behind:  # the balance is known once the held credit is posted
                account = ledger.member_account(member.id)
                uow.publish_later(functools.partial(_with_balance, earned, posted, account))
            else:
                await uow.publish(earned(balance_after=await _available_after(session, member, posted)))
        await rules.complete_referral(uow, program, member, purchase_id=purchase.purchase_id, now=at)
        await tiers.requalify(uow, program, member, at)
    return total


async def claw_back_for_refund(uow: UnitOfWork, refund: PurchaseRefunded) -> int:
    """Take back, in each program the purchase earned in, the points of the refunded share: pending
    first, then available, then by the program's negative-balance policy. Cumulative over refunds, so
    partial refunds adding up to the purchase take back exactly what it earned."""
    session = uow.session
    taken_total = 0
    earned_rows = (
        await session.execute(
            select(LedgerTransaction).where(
                LedgerTransaction.reference.like(f"purchase:%:{refund.purchase_id}"),
                LedgerTransaction.kind == "earn",
            )
        )
    ).scalars()
    for earned in earned_rows:
        program_id = earned.program_id or programs.DEFAULT_PROGRAM
        reference = f"clawback:{program_id}:{refund.purchase_id}:{refund.refund_id}"
        if await ledger.transaction_for(session, reference) is not None:
            continue
        program = await programs.get_program(session, program_id)
        assert earned.member_id is not None
        member = await programs.get_member(session, earned.member_id)
        previous = (
            await session.scalars(
                select(LedgerTransaction).where(
                    LedgerTransaction.reference.like(f"clawback:{program_id}:{refund.purchase_id}:%")
                )
            )
        ).all()
        clawed = sum(int(t.details.get("points", 0)) + int(t.details.get("uncollected", 0)) for t in previous)
        points = int(earned.details.get("points", 0))
        qualifying = int(earned.details.get("qualifying", 0))
        due = clawback_due(points, refund.purchase_total_minor, refund.refunded_total_minor, clawed)
        q_clawed = sum(int(t.details.get("qualifying_due", 0)) for t in previous)
        q_due = clawback_due(qualifying, refund.purchase_total_minor, refund.refunded_total_minor, q_clawed)
        if due <= 0 and q_due <= 0:
            continue
        lots = list((await session.scalars(select(Lot).where(Lot.transaction_id == earned.id))).all())
        now = datetime.now(UTC)
        posted, uncollected = await ledger.take_back(
            session,
            program,
            member,
            due,
            source_lots=lots,
            reference=reference,
            kind="clawback",
            to_account=ledger.program_account(program.id, "issued"),
            qualifying=q_due,
            reason="refund",
            details={
                "purchase_id": refund.purchase_id,
                "refund_id": refund.refund_id,
                "qualifying_due": q_due,
                "refunded_total_minor": refund.refunded_total_minor,
            },
            now=now,
        )
        if posted is None:
            continue
        taken = int(posted.transaction.details["points"])
        taken_total += taken
        if taken > 0:
            await uow.publish(
                PointsDeducted(
                    customer_id=member.customer_id,
                    program_id=program.id,
                    transaction_id=posted.id,
                    points=taken,
                    reason="refund",
                    reference=refund.refund_id,
                    uncollected=uncollected,
                    balance_after=await _available_after(session, member, posted),
                    occurred_at=now,
                )
            )
    return taken_total


async def follow_merge(uow: UnitOfWork, merged: CustomerMerged) -> None:
    """The absorbed customer's memberships follow the survivor. Where the survivor is not a member of
    that program, the membership (card, lots, tier) simply changes hands. Where both are members, the
    absorbed member's available points move to the survivor by a ledger transfer (lots keep their
    expiry dates), pending lots and qualifying points move with them, and the absorbed membership is
    closed. Idempotent: a closed or already re-pointed membership is skipped."""
    session = uow.session
    absorbed = (
        await session.scalars(
            select(Member).where(Member.customer_id == merged.merged_id, Member.status != "merged")
        )
    ).all()
    for member in absorbed:
        program = await programs.get_program(session, member.program_id)
        survivor = await ledger.member_of(session, program.id, merged.customer_id)
        if survivor is None:
            member.customer_id = merged.customer_id
            member.version += 1
            continue
        balances = await ledger.balances(session, member.id)
        now = datetime.now(UTC)
        if balances["available"] > 0:
            await ledger.transfer(
                session, program, member, survivor, balances["available"],
                reference=f"merge:{member.id}:available", kind="merge", reason="customer merged", now=now,
            )  # fmt: skip
        moves = []
        if balances["pending"] > 0:
            moves += [
                Posting(ledger.member_account(member.id, "pending"), -balances["pending"]),
                Posting(ledger.member_account(survivor.id, "pending"), balances["pending"]),
            ]
        if balances["qualifying"] > 0:
            moves += [
                Posting(ledger.member_account(member.id, "qualifying"), -balances["qualifying"]),
                Posting(ledger.member_account(survivor.id, "qualifying"), balances["qualifying"]),
            ]
        if moves:
            await ledger.post(
                session, program_id=program.id, kind="merge", postings=moves, member=member,
                reference=f"merge:{member.id}:pending", reason="customer merged", now=now,
            )  # fmt: skip
            await session.execute(
                update(Lot)
                .where(Lot.member_id == member.id, Lot.status == "pending")
                .values(member_id=survivor.id)
            )
        member.status = "merged"
        member.card_status = "replaced"
        member.version += 1
    await session.flush()
