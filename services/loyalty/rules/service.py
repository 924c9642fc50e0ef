"""Rules' use cases: loading a program's rules and the facts they need, evaluating purchases and bonus
events (the engine decides; this module only gathers facts and writes through the ledger), granting
bonuses once each, completing referrals, the birthday pass, and rule maintenance.

Every bonus is a ledger `earn` of kind `bonus` whose `reference` names what it is for, so a bonus is
granted at most once however often its trigger arrives:

| bonus              | reference                                                   |
|--------------------|-------------------------------------------------------------|
| enrolment          | `bonus:<program>:enrolment:<member>`                        |
| birthday           | `bonus:<program>:birthday:<member>:<local year>`            |
| survey answered    | `bonus:<program>:survey_answered:<survey id>`               |
| referral, referee  | `bonus:<program>:referral_referee:<referred member>`        |
| referral, referrer | `bonus:<program>:referral_referrer:<referred member>`       |
| custom event       | `bonus:<program>:custom:<name>:<member>:<reference>`        |

Bonus points are available at once (no pending window) and do not count towards tiers.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import extract, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.loyalty import known_customers, ledger, segments
from services.loyalty.earning import Earning, PurchaseFacts
from services.loyalty.models import LedgerEntry, LedgerTransaction, Member, Program
from services.loyalty.rules import engine, tiers
from services.loyalty.rules.models import EarningRule, Referral
from shared.contracts.interactions import SurveyAnswered
from shared.contracts.loyalty import PointsEarned, ReferralCompleted
from shared.errors import InvalidInput, NotFound
from shared.logging import get_logger
from shared.uow import UnitOfWork, UnitOfWorkFactory

log = get_logger(__name__)

_SOURCE_KINDS = {"purchase": "earn", "bonus": "bonus"}


def as_rule(row: EarningRule) -> engine.Rule:
    return engine.Rule(
        id=row.id,
        name=row.name,
        kind=row.kind,
        definition=row.definition,
        priority=row.priority,
        valid_from=row.valid_from,
        valid_until=row.valid_until,
        active=row.active,
    )


_RULES_CACHE = "loyalty.rules"


async def load_rules(session: AsyncSession, program_id: str) -> list[engine.Rule]:
    """The program's active rules (validity windows are checked by the engine at the event's time).

    Read once per session (a consumer's batch of events is one transaction): every rule write below
    goes through `_rules_changed`, which drops the session's copy."""
    cache: dict[str, list[engine.Rule]] = session.info.setdefault(_RULES_CACHE, {})
    rules = cache.get(program_id)
    if rules is None:
        rows = await session.scalars(
            select(EarningRule).where(EarningRule.program_id == program_id, EarningRule.active.is_(True))
        )
        rules = cache[program_id] = [as_rule(r) for r in rows]
    return list(rules)


def _rules_changed(session: AsyncSession) -> None:
    session.info.pop(_RULES_CACHE, None)


async def earned_in_period(
    session: AsyncSession, member_id: str, sources: Sequence[str], start: datetime, end: datetime
) -> int:
    """Points credited to the member (available or pending) by earn/bonus transactions in [start, end)."""
    kinds = [_SOURCE_KINDS[s] for s in sources]
    total = await session.scalar(
        select(func.coalesce(func.sum(LedgerEntry.amount), 0))
        .join(LedgerTransaction, LedgerTransaction.id == LedgerEntry.transaction_id)
        .where(
            LedgerTransaction.member_id == member_id,
            LedgerTransaction.kind.in_(kinds),
            LedgerTransaction.created_at >= start,
            LedgerTransaction.created_at < end,
            LedgerEntry.account_id.in_(
                [ledger.member_account(member_id), ledger.member_account(member_id, "pending")]
            ),
        )
    )
    return int(total or 0)


async def _granted_in_period(
    session: AsyncSession, program_id: str, member_id: str, event: str, start: datetime, end: datetime
) -> int:
    count = await session.scalar(
        select(func.count())
        .select_from(LedgerTransaction)
        .where(
            LedgerTransaction.member_id == member_id,
            LedgerTransaction.kind == "bonus",
            LedgerTransaction.reference.like(f"bonus:{program_id}:{event}:%"),
            LedgerTransaction.created_at >= start,
            LedgerTransaction.created_at < end,
        )
    )
    return int(count or 0)


async def context_for(
    session: AsyncSession,
    program: Program,
    member: Member | None,
    customer_id: str | None,
    rules: Sequence[engine.Rule],
    *,
    at: datetime,
    source: str,
    event: str | None = None,
) -> engine.Context:
    """The facts the rules in force at `at` need, and only those (no query for an unused fact)."""
    tier = member.tier if member is not None else None
    in_force = [r for r in rules if r.valid_at(at)]
    customer = member.customer_id if member is not None else customer_id
    member_segments: frozenset[str] = frozenset()
    if customer and any(r.conditions.get("segments") for r in in_force):
        member_segments = frozenset(await segments.of(session, customer))
    earned: dict[str, int] = {}
    granted: dict[str, int] = {}
    if member is not None:
        for rule in in_force:
            if rule.kind == "cap" and source in rule.definition.get("applies_to", engine.CAP_SOURCES):
                start, end = engine.period_bounds(rule.definition["period"], at, program.timezone)
                earned[rule.id] = await earned_in_period(
                    session, member.id, rule.definition.get("applies_to", engine.CAP_SOURCES), start, end
                )
            limit = rule.definition.get("limit")
            if rule.kind == "event_bonus" and limit and event and rule.definition.get("event") == event:
                start, end = engine.period_bounds(limit["period"], at, program.timezone)
                granted[rule.id] = await _granted_in_period(session, program.id, member.id, event, start, end)
    return engine.Context(
        tier=tier,
        segments=member_segments,
        tier_multiplier=tiers.multiplier_for(program, tier),
        earned_in_cap_period=earned,
        granted_in_limit_period=granted,
    )


async def evaluate_purchase(
    session: AsyncSession, program: Program, member: Member | None, purchase: PurchaseFacts
) -> Earning:
    """What the purchase earns in the program for the member (earning and the dry run both call this
    through `earning.evaluate`). Reads only."""
    rules = await load_rules(session, program.id)
    ctx = await context_for(
        session, program, member, purchase.customer_id, rules, at=purchase.occurred_at, source="purchase"
    )
    return engine.purchase_points(
        currency=program.currency,
        points_per_unit=program.points_per_unit,
        purchase=purchase,
        rules=rules,
        ctx=ctx,
    )


async def evaluate_event(
    session: AsyncSession, program: Program, member: Member, event: str, at: datetime
) -> Earning:
    rules = await load_rules(session, program.id)
    ctx = await context_for(session, program, member, None, rules, at=at, source="bonus", event=event)
    return engine.event_points(event=event, at=at, rules=rules, ctx=ctx)


# --- granting bonuses -------------------------------------------------------------------------------


def bonus_reference(program_id: str, event: str, key: str) -> str:
    reference = f"bonus:{program_id}:{event}:{key}"
    if len(reference) <= 200:
        return reference
    return f"bonus:{program_id}:{event}:h{hashlib.sha256(key.encode()).hexdigest()[:48]}"


@dataclass(slots=True)
class Granted:
    """The outcome of a bonus event: the points posted (`transaction` set), or why not."""

    event: str
    reference: str
    earning: Earning = field(default_factory=lambda: Earning(0, 0, []))
    transaction: LedgerTransaction | None = None
    duplicate: bool = False

    @property
    def points(self) -> int:
        if self.transaction is not None:
            return int(self.transaction.details.get("points", 0))
        return self.earning.points


async def grant_event_bonus(
    uow: UnitOfWork,
    program: Program,
    member: Member,
    event: str,
    key: str,
    *,
    now: datetime | None = None,
    at: datetime | None = None,
) -> Granted:
    """Grant the bonus of `event` (the matching `event_bonus` rules, within limits and caps) once per
    `key`: a second call with the same key finds the first grant and posts nothing."""
    session = uow.session
    now = now or datetime.now(UTC)
    reference = bonus_reference(program.id, event, key)
    existing = await ledger.transaction_for(session, reference)
    if existing is not None:
        return Granted(event, reference, transaction=existing, duplicate=True)
    if member.status != "active" or member.program_id != program.id:
        return Granted(event, reference)
    outcome = await evaluate_event(session, program, member, event, at or now)
    if outcome.points <= 0:
        return Granted(event, reference, earning=outcome)
    posted = await ledger.earn(
        session,
        program,
        member,
        outcome.points,
        kind="bonus",
        reference=reference,
        pending_days=0,
        reason=f"bonus:{event}",
        details={"event": event, "key": key, **outcome.details()},
        now=now,
    )
    await uow.publish(
        PointsEarned(
            customer_id=member.customer_id,
            program_id=program.id,
            transaction_id=posted.id,
            points=outcome.points,
            qualifying=0,
            pending=False,
            reason=f"bonus:{event}",
            reference=key,
            balance_after=(await ledger.balances(session, member.id))["available"],
            occurred_at=now,
        )
    )
    return Granted(event, reference, earning=outcome, transaction=posted.transaction)


async def complete_referral(
    uow: UnitOfWork, program: Program, member: Member, *, purchase_id: str | None, now: datetime
) -> Referral | None:
    """The referred `member` qualified (their first earning purchase): reward both sides once —
    `referral_referee` to them, `referral_referrer` to the referrer (subject to that rule's `limit`,
    the cap of referrals rewarded per referrer and period) — and publish `referral_completed`.
    Nothing happens for a member nobody referred, or whose referral already completed."""
    if member.referred_by is None or member.program_id != program.id:
        return None
    session = uow.session
    if await session.get(Referral, member.id) is not None:
        return None
    referrer = await session.get(Member, member.referred_by)
    row = Referral(
        referred_member_id=member.id,
        referrer_member_id=member.referred_by,
        program_id=program.id,
        purchase_id=purchase_id,
        referrer_points=0,
        referee_points=0,
        completed_at=now,
    )
    session.add(row)
    await session.flush()  # the primary key makes the referral complete once, even under a race
    referee = await grant_event_bonus(uow, program, member, "referral_referee", member.id, now=now)
    row.referee_points = referee.points if referee.transaction is not None else 0
    if referrer is not None and referrer.program_id == program.id:
        given = await grant_event_bonus(uow, program, referrer, "referral_referrer", member.id, now=now)
        row.referrer_points = given.points if given.transaction is not None else 0
        await uow.publish(
            ReferralCompleted(
                customer_id=referrer.customer_id,
                referred_customer_id=member.customer_id,
                program_id=program.id,
                completed_at=now,
            )
        )
    await session.flush()
    return row


async def survey_answered(uow: UnitOfWork, answer: SurveyAnswered, *, now: datetime | None = None) -> int:
    """The survey bonus in every active program the customer is an active member of, once per survey."""
    session = uow.session
    customer_id = await known_customers.resolve(session, answer.customer_id, lock=True)  # merged ids too
    rows = (
        await session.execute(
            select(Program, Member)
            .join(Member, Member.program_id == Program.id)
            .where(Program.status == "active", Member.customer_id == customer_id)
            .order_by(Program.id)
        )
    ).all()
    total = 0
    for program, member in rows:
        granted = await grant_event_bonus(
            uow, program, member, "survey_answered", answer.survey_id, now=now, at=answer.answered_at
        )
        if not granted.duplicate and granted.transaction is not None:
            total += granted.points
    return total


def _has_event_rule(rules: Sequence[engine.Rule], event: str) -> bool:
    return any(r.kind == "event_bonus" and r.definition.get("event") == event for r in rules)


async def custom_event(
    uow: UnitOfWork,
    program: Program,
    member: Member,
    name: str,
    reference: str,
    *,
    now: datetime | None = None,
) -> Granted:
    """A custom bonus event (`custom:<name>`), once per member and `reference`."""
    event = f"custom:{name}"
    if not engine.valid_event(event):
        raise InvalidInput("body.event", "must be 1-40 characters: a-z, 0-9, _ . and -")
    if not _has_event_rule(await load_rules(uow.session, program.id), event):
        raise InvalidInput("body.event", f"no active event_bonus rule for {event} in program {program.id}")
    return await grant_event_bonus(uow, program, member, event, f"{member.id}:{reference}", now=now)


def _birthday_matches(today: date) -> Any:
    month = extract("month", Member.birth_date)
    day = extract("day", Member.birth_date)
    same_day = (month == today.month) & (day == today.day)
    leap = today.year % 4 == 0 and (today.year % 100 != 0 or today.year % 400 == 0)
    if today.month == 2 and today.day == 28 and not leap:  # 29 February birthdays on the 28th
        return or_(same_day, (month == 2) & (day == 29))
    return same_day


async def birthdays(uow_factory: UnitOfWorkFactory, *, now: datetime | None = None, batch: int = 500) -> int:
    """The daily birthday pass: members whose birthday is today in their program's time zone get the
    birthday bonus, once per member and year (safe to run as often as wanted). Returns grants made."""
    now = now or datetime.now(UTC)
    granted = 0
    async with uow_factory() as uow:
        programs = list(await uow.session.scalars(select(Program).where(Program.status == "active")))
        wanted = {p.id: _has_event_rule(await load_rules(uow.session, p.id), "birthday") for p in programs}
    for program in programs:
        if not wanted[program.id]:
            continue
        today = tiers.today_in(program.timezone, now)
        after = ""
        while True:
            async with uow_factory() as uow:
                members = list(
                    await uow.session.scalars(
                        select(Member)
                        .where(
                            Member.program_id == program.id,
                            Member.status == "active",
                            Member.birth_date.is_not(None),
                            _birthday_matches(today),
                            Member.id > after,
                        )
                        .order_by(Member.id)
                        .limit(batch)
                    )
                )
                if not members:
                    break
                current = await uow.session.get(Program, program.id)
                assert current is not None
                for member in members:
                    result = await grant_event_bonus(
                        uow, current, member, "birthday", f"{member.id}:{today.year}", now=now
                    )
                    granted += int(result.transaction is not None and not result.duplicate)
                await uow.commit()
                after = members[-1].id
    return granted


# --- rule maintenance -------------------------------------------------------------------------------


def _check_window(valid_from: datetime | None, valid_until: datetime | None) -> None:
    if valid_from is not None and valid_until is not None and valid_until <= valid_from:
        raise InvalidInput("body.valid_until", "must be after valid_from")


async def create_rule(session: AsyncSession, program: Program, values: dict[str, Any]) -> EarningRule:
    definition = engine.validate_definition(
        values["kind"], values.get("definition"), tier_names=tiers.tier_names(program)
    )
    _check_window(values.get("valid_from"), values.get("valid_until"))
    now = datetime.now(UTC)
    rule = EarningRule(
        id=str(uuid.uuid4()),
        program_id=program.id,
        name=values["name"],
        kind=values["kind"],
        priority=values.get("priority", 100),
        definition=definition,
        valid_from=values.get("valid_from"),
        valid_until=values.get("valid_until"),
        active=values.get("active", True),
        version=1,
        created_at=now,
        updated_at=now,
    )
    session.add(rule)
    await session.flush()
    _rules_changed(session)
    return rule


async def get_rule(session: AsyncSession, program_id: str, rule_id: str) -> EarningRule:
    rule = await session.get(EarningRule, rule_id)
    if rule is None or rule.program_id != program_id:
        raise NotFound(f"rule {rule_id} does not exist in program {program_id}", rule_id=rule_id)
    return rule


async def replace_rule(
    session: AsyncSession, program: Program, rule_id: str, values: dict[str, Any]
) -> EarningRule:
    rule = await get_rule(session, program.id, rule_id)
    definition = engine.validate_definition(
        values["kind"], values.get("definition"), tier_names=tiers.tier_names(program)
    )
    _check_window(values.get("valid_from"), values.get("valid_until"))
    rule.name = values["name"]
    rule.kind = values["kind"]
    rule.priority = values.get("priority", 100)
    rule.definition = definition
    rule.valid_from = values.get("valid_from")
    rule.valid_until = values.get("valid_until")
    rule.active = values.get("active", True)
    rule.version += 1
    rule.updated_at = datetime.now(UTC)
    await session.flush()
    _rules_changed(session)
    return rule


async def deactivate_rule(session: AsyncSession, program_id: str, rule_id: str) -> EarningRule:
    rule = await get_rule(session, program_id, rule_id)
    if rule.active:
        rule.active = False
        rule.version += 1
        rule.updated_at = datetime.now(UTC)
        await session.flush()
        _rules_changed(session)
    return rule


async def list_rules(session: AsyncSession, program_id: str, *, include_inactive: bool) -> list[EarningRule]:
    query = select(EarningRule).where(EarningRule.program_id == program_id)
    if not include_inactive:
        query = query.where(EarningRule.active.is_(True))
    rows = await session.scalars(query)
    kind_order = {kind: i for i, kind in enumerate(("bonus_points", "multiplier", "cap", "event_bonus"))}
    return sorted(rows, key=lambda r: (kind_order.get(r.kind, 9), r.priority, r.name, r.id))


async def set_tiers(
    session: AsyncSession, program: Program, tier_defs: Any, *, grace: int, warning: int
) -> Program:
    """Store validated tier definitions (version + 1). Refused while an active rule names a tier the
    new definitions drop."""
    normalised = tiers.validate_tiers(tier_defs)
    names = {t["name"] for t in normalised}
    for rule in await load_rules(session, program.id):
        for name in rule.conditions.get("tiers") or []:
            if name not in names:
                raise InvalidInput(
                    "body.tiers",
                    f"tier {name!r} is used by active rule {rule.name!r} ({rule.id}); change it first",
                )
    program.tiers = normalised
    program.settings = {**(program.settings or {}), "tier_grace_days": grace, "tier_warning_days": warning}
    program.version += 1
    program.updated_at = datetime.now(UTC)
    await session.flush()
    return program
