"""Segmentation's use cases: facts from events, the customer's features recomputed from them.

Every event handler stores its fact once (keyed on the event's own id: a redelivered event changes
nothing) under the customer's current id (a merge already seen sends facts of the absorbed customer to
the survivor) and with the id it was recorded for as its origin, then recomputes that customer's
features from all their facts. A merge moves the absorbed customer's facts to the survivor; an unmerge
moves back the facts whose origin is the restored customer or one merged into it, and recomputes both.
Events about customers segmentation has not heard of are kept as facts and count at once, under the
customer's id (there is no order to wait for: the features are a function of the facts; a later
registration or merge only adds to them). Loyalty memberships are upserted facts (keyed by member id:
the enrolment fills in `enrolled_at`, the latest `tier_changed` sets the tier, an older one arriving
late is ignored); referrals and points movements are facts stored once like purchases. Hooks
registered with `on_refreshed` (segments, value and risk) run after each refresh, in the same
transaction.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import delete, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.segmentation import features as feature_store
from services.segmentation.models import (
    ComplaintFact,
    ContactFact,
    CustomerFeatures,
    CustomerSpend,
    LoyaltyMembershipFact,
    LoyaltyPointsFact,
    MergedCustomer,
    PurchaseFact,
    ReferralFact,
    RefundFact,
    RegistrationFact,
    SurveyFact,
)
from services.segmentation.repository import FeatureRepository
from services.segmentation.schemas import FeaturesOut, SpendOut
from shared.contracts.identity import (
    CustomerErased,
    CustomerMerged,
    CustomerRegistered,
    CustomerUnmerged,
)
from shared.contracts.interactions import (
    ComplaintOpened,
    ComplaintSlaBreached,
    ComplaintStatusChanged,
    InteractionRecorded,
    PurchaseRecorded,
    PurchaseRefunded,
    SurveyAnswered,
)
from shared.contracts.loyalty import (
    MemberEnrolled,
    PointsEarned,
    PointsRedeemed,
    ReferralCompleted,
    TierChanged,
)
from shared.db import dialect_insert as _insert
from shared.db import padded
from shared.errors import NotFound
from shared.uow import UnitOfWork

Hook = Callable[[UnitOfWork, list[str]], Awaitable[None]]
_HOOKS: list[Hook] = []
HOOK_BATCH = 5_000
FACT_TABLES: tuple[Any, ...] = (
    PurchaseFact,
    RefundFact,
    ContactFact,
    ComplaintFact,
    SurveyFact,
    LoyaltyMembershipFact,
    ReferralFact,
    LoyaltyPointsFact,
)
# Tables whose rows follow merges and unmerges (registrations also survive erasure, as registered_at did).
FOLLOWING_TABLES: tuple[Any, ...] = (*FACT_TABLES, RegistrationFact)


_CONTACT_HOOKS: list[Hook] = []

# What the event being handled can have changed, for the hooks (segments re-evaluate only the rules
# reading one of these; `segments.compile.fields` names them): None while any feature may have changed.
T = TypeVar("T")

CHANGED: ContextVar[frozenset[str] | None] = ContextVar("segmentation_changed", default=None)
# Why the hooks run, as segment history and `segment_entered`/`segment_exited` name it.
CAUSE: ContextVar[str] = ContextVar("segmentation_cause", default="event")
VALUE_FIELDS = frozenset({"value_tier", "risk_level", "ladder_stage"})
PURCHASE_CHANGES = frozenset(
    {
        "first_purchase_at",
        "last_purchase_at",
        "purchase_count",
        "currency",
        "total_spend_minor",
        "refunded_minor",
        "net_spend_minor",
        "average_order_minor",
        "mean_interpurchase_days",
        "channels",
        "channel_count",
        "multichannel",
        "window:purchases",
        "window:spend",
        *VALUE_FIELDS,
    }
)
CONTACT_CHANGES = frozenset(
    {"contact_count", "last_contact_at", "channels", "channel_count", "multichannel", "window:contacts"}
)
MEMBERSHIP_CHANGES = frozenset({"loyalty_member", "loyalty_programs", "loyalty_tier", "member_since"})
# Referrals can make an advocate (the ladder), so value fields may change too.
REFERRAL_CHANGES = frozenset({"referrals_made", *VALUE_FIELDS})
POINTS_CHANGES = frozenset({"points_earned", "points_redeemed"})


async def _run_hooks(
    uow: UnitOfWork, hooks: list[Hook], ids: list[str], changed: frozenset[str] | None
) -> None:
    token = CHANGED.set(changed)
    try:
        for hook in hooks:
            await hook(uow, ids)
    finally:
        CHANGED.reset(token)


PopulationHook = Callable[[UnitOfWork], Awaitable[None]]
_POPULATION_HOOKS: dict[Hook, PopulationHook] = {}


def on_refreshed(hook: Hook, *, after_contacts: bool = True, everyone: PopulationHook | None = None) -> None:
    """Run `hook(uow, customer_ids)` after the features of those customers were recomputed; with
    `after_contacts=False`, not after a contact (which changes only the contact features: count,
    last contact, channels)."""
    if hook not in _HOOKS:
        _HOOKS.append(hook)
    if after_contacts and hook not in _CONTACT_HOOKS:
        _CONTACT_HOOKS.append(hook)
    if everyone is not None:  # what `hook` gives every customer, set-based (the recompute runs it)
        _POPULATION_HOOKS[hook] = everyone


async def current_id(session: AsyncSession, customer_id: str) -> str:
    """The customer's id today (merges already seen followed)."""
    current = customer_id
    for _ in range(32):
        merged_into = await session.scalar(
            select(MergedCustomer.merged_into).where(MergedCustomer.customer_id == current)
        )
        if merged_into is None:
            return current
        current = merged_into
    return current


async def current_ids(session: AsyncSession, customer_ids: Iterable[str]) -> dict[str, str]:
    """`current_id` of many customers at once: one query per step along the longest merge chain."""
    current = {c: c for c in customer_ids}
    frontier = set(current)
    for _ in range(32):
        if not frontier:
            break
        chain = select(MergedCustomer.customer_id, MergedCustomer.merged_into).where(
            MergedCustomer.customer_id.in_(sorted(frontier))
        )
        step = {merged: into for merged, into in await session.execute(chain)}
        if not step:
            break
        for customer_id, now_at in current.items():
            if now_at in step:
                current[customer_id] = step[now_at]
        frontier = set(step.values())
    return current


async def refreshed(uow: UnitOfWork, customer_ids: list[str]) -> None:
    await feature_store.refresh(uow.session, customer_ids)
    for hook in _HOOKS:
        await hook(uow, customer_ids)


async def merge_members(session: AsyncSession, root: str) -> set[str]:
    """`root` and every customer whose merge chain leads to it (as segmentation knows the merges)."""
    members = {root}
    frontier = {root}
    for _ in range(32):
        if not frontier:
            break
        rows = await session.scalars(
            select(MergedCustomer.customer_id).where(MergedCustomer.merged_into.in_(sorted(frontier)))
        )
        frontier = set(rows) - members
        members |= frontier
    return members


async def _fact(
    uow: UnitOfWork,
    model: Any,
    values: dict[str, Any],
    origin: str | None = None,
    *,
    current: str | None = None,
) -> bool:
    """Store a fact once, under the customer's current id (`current`, if the caller has looked it up
    already) and with `origin` (by default the id the event names) as the customer it was recorded
    for; False when it was stored before (a redelivered event)."""
    session = uow.session
    values = {
        **values,
        "origin_customer_id": origin or values["customer_id"],
        "customer_id": current or await current_id(session, values["customer_id"]),
    }
    key = next(iter(model.__table__.primary_key.columns))
    result = await session.execute(
        _insert(session)(model).values(**values).on_conflict_do_nothing().returning(key)
    )
    return result.first() is not None


async def on_customer_registered(uow: UnitOfWork, event: CustomerRegistered) -> None:
    """The registration is a fact like any other: `registered_at` is the earliest registration among
    the customer and those merged into it (a registration arriving after its merge counts for the
    survivor)."""
    session = uow.session
    values = {"customer_id": event.customer_id, "registered_at": event.registered_at}
    customer = await current_id(session, event.customer_id)
    await _fact(uow, RegistrationFact, values, current=customer)
    await FeatureRepository(session).ensure_customer(customer)
    await refreshed(uow, [customer])


async def on_purchase_recorded(uow: UnitOfWork, event: PurchaseRecorded) -> None:
    values = {
        "purchase_id": event.purchase_id,
        "customer_id": event.customer_id,
        "occurred_at": event.occurred_at,
        "currency": event.currency,
        "total_minor": event.total_minor,
        "channel": event.channel,
    }
    customer = await current_id(uow.session, event.customer_id)
    if not await _fact(uow, PurchaseFact, values, current=customer):
        return
    quick = await feature_store.add_purchase(
        uow.session, customer, event.occurred_at, event.currency, event.total_minor, event.channel
    )
    if not quick:
        await feature_store.refresh(uow.session, [customer])
    await _run_hooks(uow, _HOOKS, [customer], PURCHASE_CHANGES)


def waves(items: Sequence[T], customer: Callable[[T], str]) -> list[list[T]]:
    """`items` in order, cut into waves in which no customer appears twice: each customer's events
    are handled in their own successive waves, as one by one, so every step of theirs (a segment
    entered then left, prospect → customer → client) is seen and announced; customers are independent
    of each other in the real-time path, so a wave may handle all of its customers together."""
    out: list[list[T]] = []
    wave: list[T] = []
    seen: set[str] = set()
    for item in items:
        who = customer(item)
        if who in seen:
            out.append(wave)
            wave, seen = [], set()
        wave.append(item)
        seen.add(who)
    if wave:
        out.append(wave)
    return out


async def _store_facts(session: AsyncSession, model: Any, rows: list[dict[str, Any]]) -> set[str]:
    """Many facts in one statement each 500 (a fact stored before is skipped): the keys stored now. The
    rows are `padded` (a repeat is skipped as a conflict): a few statement texts for any wave size."""
    table = model.__table__
    key = next(iter(table.primary_key.columns))
    statement = _insert(session)(table).on_conflict_do_nothing().returning(key)
    stored: set[str] = set()
    for start in range(0, len(rows), 500):
        stored.update((await session.execute(statement, padded(rows[start : start + 500]))).scalars())
    return stored


async def on_purchases_recorded(uow: UnitOfWork, events: Sequence[PurchaseRecorded]) -> None:
    """A run of purchases (the consumer's batch), in waves with one purchase per customer each: a
    wave's facts in one statement, the features of its customers updated together (`add_purchases`),
    then value, risk, stage and segments evaluated once for all of them. The same end state and the
    same events as `on_purchase_recorded` one by one."""
    session = uow.session
    current = await current_ids(session, {e.customer_id for e in events})
    for wave in waves(events, lambda e: current[e.customer_id]):
        rows = [
            {
                "purchase_id": e.purchase_id,
                "customer_id": current[e.customer_id],
                "origin_customer_id": e.customer_id,
                "occurred_at": e.occurred_at,
                "currency": e.currency,
                "total_minor": e.total_minor,
                "channel": e.channel,
            }
            for e in wave
        ]
        stored = await _store_facts(session, PurchaseFact, rows)
        new: list[feature_store.NewPurchase] = []
        for e in wave:  # a purchase id twice in the wave: the first one is the fact (as one by one)
            if e.purchase_id in stored:
                stored.discard(e.purchase_id)
                new.append(
                    feature_store.NewPurchase(
                        current[e.customer_id], e.occurred_at, e.currency, e.total_minor, e.channel
                    )
                )
        if new:
            customers = await feature_store.add_purchases(session, new)
            await _run_hooks(uow, _HOOKS, customers, PURCHASE_CHANGES)


async def on_purchase_refunded(uow: UnitOfWork, event: PurchaseRefunded) -> None:
    values = {
        "refund_id": event.refund_id,
        "purchase_id": event.purchase_id,
        "customer_id": event.customer_id,
        "occurred_at": event.occurred_at,
        "currency": event.currency,
        "amount_minor": event.amount_minor,
    }
    # A refund belongs with its purchase: after a merge the event names the survivor, but an unmerge
    # must give the refund back with the purchase it refunds.
    purchase_origin = await uow.session.scalar(
        select(PurchaseFact.origin_customer_id).where(PurchaseFact.purchase_id == event.purchase_id)
    )
    if await _fact(uow, RefundFact, values, origin=purchase_origin):
        await refreshed(uow, [await current_id(uow.session, event.customer_id)])


async def on_interaction_recorded(uow: UnitOfWork, event: InteractionRecorded) -> None:
    values = {
        "interaction_id": event.interaction_id,
        "customer_id": event.customer_id,
        "kind": event.kind,
        "channel": event.channel,
        "direction": event.direction,
        "occurred_at": event.occurred_at,
    }
    customer = await current_id(uow.session, event.customer_id)
    if not await _fact(uow, ContactFact, values, current=customer):
        return
    if not await feature_store.add_contact(uow.session, customer, event.occurred_at, event.channel):
        await feature_store.refresh(uow.session, [customer])
        await _run_hooks(uow, _CONTACT_HOOKS, [customer], None)  # a first fact: anything
        return
    await _run_hooks(uow, _CONTACT_HOOKS, [customer], CONTACT_CHANGES)


async def _complaint(
    uow: UnitOfWork, complaint_id: str, customer_id: str, at: datetime, **state: Any
) -> None:
    """Upsert the complaint's fact, unless a later event already set it (events may come out of order)."""
    session = uow.session
    customer = await current_id(session, customer_id)
    row = await session.get(ComplaintFact, complaint_id, with_for_update=True)
    if row is None:
        values = {"status": "opened", "answered": False, "open": True, "breaches": 0, **state}
        session.add(
            ComplaintFact(
                complaint_id=complaint_id,
                customer_id=customer,
                origin_customer_id=customer_id,
                changed_at=at,
                **values,
            )
        )
    else:
        if "breaches" in state:  # breaches add up whatever their order
            row.breaches += state.pop("breaches")
        if at >= row.changed_at:
            for name, value in state.items():
                setattr(row, name, value)
            row.changed_at = at
        if "opened_at" in state:
            row.opened_at = state["opened_at"]
    await session.flush()
    await refreshed(uow, [customer])


async def on_complaint_opened(uow: UnitOfWork, event: ComplaintOpened) -> None:
    await _complaint(uow, event.complaint_id, event.customer_id, event.opened_at, opened_at=event.opened_at)


async def on_complaint_status_changed(uow: UnitOfWork, event: ComplaintStatusChanged) -> None:
    await _complaint(
        uow,
        event.complaint_id,
        event.customer_id,
        event.changed_at,
        status=event.to_status,
        answered=event.answered,
        open=event.open,
    )


async def on_complaint_sla_breached(uow: UnitOfWork, event: ComplaintSlaBreached, event_id: str) -> None:
    # One breach per event (the inbox already drops a redelivered one).
    await _complaint(uow, event.complaint_id, event.customer_id, event.detected_at, breaches=1)


async def on_survey_answered(uow: UnitOfWork, event: SurveyAnswered) -> None:
    values = {
        "survey_id": event.survey_id,
        "customer_id": event.customer_id,
        "answered_at": event.answered_at,
        "csat": event.csat,
        "nps": event.nps,
        "overall": event.overall,
    }
    customer = await current_id(uow.session, event.customer_id)
    if await _fact(uow, SurveyFact, values, current=customer):
        await refreshed(uow, [customer])


async def on_member_enrolled(uow: UnitOfWork, event: MemberEnrolled) -> None:
    """The membership's fact, or its `enrolled_at` if a tier change created it first; a redelivered
    enrolment changes nothing."""
    session = uow.session
    insert = _insert(session)(LoyaltyMembershipFact).values(
        member_id=event.member_id,
        customer_id=await current_id(session, event.customer_id),
        origin_customer_id=event.customer_id,
        program_id=event.program_id,
        enrolled_at=event.enrolled_at,
    )
    statement = insert.on_conflict_do_update(
        index_elements=[LoyaltyMembershipFact.member_id],
        set_={"enrolled_at": insert.excluded.enrolled_at},
        where=LoyaltyMembershipFact.enrolled_at.is_(None),
    ).returning(LoyaltyMembershipFact.customer_id)
    customer = (await session.execute(statement)).scalar()
    if customer is not None:
        await _loyalty_refreshed(uow, customer, MEMBERSHIP_CHANGES)


async def on_tier_changed(uow: UnitOfWork, event: TierChanged) -> None:
    """The membership's tier, unless a later change was already seen (events may come out of order; a
    redelivered one, at the same instant, changes nothing). The membership is created if the
    enrolment has not arrived yet."""
    session = uow.session
    insert = _insert(session)(LoyaltyMembershipFact).values(
        member_id=event.member_id,
        customer_id=await current_id(session, event.customer_id),
        origin_customer_id=event.customer_id,
        program_id=event.program_id,
        tier=event.to_tier,
        tier_changed_at=event.changed_at,
    )
    statement = insert.on_conflict_do_update(
        index_elements=[LoyaltyMembershipFact.member_id],
        set_={"tier": insert.excluded.tier, "tier_changed_at": insert.excluded.tier_changed_at},
        where=or_(
            LoyaltyMembershipFact.tier_changed_at.is_(None),
            LoyaltyMembershipFact.tier_changed_at < insert.excluded.tier_changed_at,
        ),
    ).returning(LoyaltyMembershipFact.customer_id)
    customer = (await session.execute(statement)).scalar()
    if customer is not None:  # whoever the membership counts for today (it follows merges)
        await _loyalty_refreshed(uow, customer, MEMBERSHIP_CHANGES)


async def on_referral_completed(uow: UnitOfWork, event: ReferralCompleted) -> None:
    """A fact of the referrer, once per referred customer and program."""
    values = {
        "customer_id": event.customer_id,
        "referred_customer_id": event.referred_customer_id,
        "program_id": event.program_id,
        "completed_at": event.completed_at,
    }
    customer = await current_id(uow.session, event.customer_id)
    if await _fact(uow, ReferralFact, values, current=customer):
        await _loyalty_refreshed(uow, customer, REFERRAL_CHANGES)


async def on_points(uow: UnitOfWork, event: PointsEarned | PointsRedeemed) -> None:
    """Points earned or redeemed, once per ledger transaction. They change no value, risk or stage, so
    only the hooks that run after contacts (segments) follow, unless the customer is new."""
    kind = "earned" if isinstance(event, PointsEarned) else "redeemed"
    values = {
        "transaction_id": event.transaction_id,
        "customer_id": event.customer_id,
        "program_id": event.program_id or "default",
        "kind": kind,
        "points": event.points,
        "occurred_at": event.occurred_at,
    }
    customer = await current_id(uow.session, event.customer_id)
    if not await _fact(uow, LoyaltyPointsFact, values, current=customer):
        return
    if await feature_store.add_points(uow.session, customer, kind, event.points):
        await _run_hooks(uow, _CONTACT_HOOKS, [customer], POINTS_CHANGES)
        return
    await feature_store.refresh(uow.session, [customer])
    await _run_hooks(uow, _HOOKS, [customer], None)  # a first fact: anything


async def on_points_many(uow: UnitOfWork, events: Sequence[PointsEarned | PointsRedeemed]) -> None:
    """`on_points` for a run of points events (the consumer's batch), in waves with one event per
    customer each (`waves`): a wave's facts in one statement, the features of its customers in two
    (`add_points_many`), the hooks once for all of them."""
    session = uow.session
    current = await current_ids(session, {e.customer_id for e in events})
    for wave in waves(events, lambda e: current[e.customer_id]):
        rows = [
            {
                "transaction_id": e.transaction_id,
                "customer_id": current[e.customer_id],
                "origin_customer_id": e.customer_id,
                "program_id": e.program_id or "default",
                "kind": "earned" if isinstance(e, PointsEarned) else "redeemed",
                "points": e.points,
                "occurred_at": e.occurred_at,
            }
            for e in wave
        ]
        stored = await _store_facts(session, LoyaltyPointsFact, rows)
        movements: list[tuple[str, str, int]] = []
        for e in wave:  # a transaction twice in the wave: the first one is the fact (as one by one)
            if e.transaction_id in stored:
                stored.discard(e.transaction_id)
                kind = "earned" if isinstance(e, PointsEarned) else "redeemed"
                movements.append((current[e.customer_id], kind, e.points))
        if not movements:
            continue
        quick, slow = await feature_store.add_points_many(session, movements)
        if quick:
            await _run_hooks(uow, _CONTACT_HOOKS, quick, POINTS_CHANGES)
        if slow:
            await feature_store.refresh(session, slow)
            await _run_hooks(uow, _HOOKS, slow, None)  # a first fact: anything


async def _loyalty_refreshed(uow: UnitOfWork, customer: str, changed: frozenset[str]) -> None:
    await feature_store.refresh(uow.session, [customer])
    await _run_hooks(uow, _HOOKS, [customer], changed)


async def on_customer_merged(uow: UnitOfWork, event: CustomerMerged) -> None:
    """The absorbed customer's facts (and those of customers merged into it before) now count for the
    survivor; their origin stays, for an unmerge. `registered_at` becomes the earliest registration."""
    session = uow.session
    await session.execute(
        _insert(session)(MergedCustomer)
        .values(customer_id=event.merged_id, merged_into=event.customer_id)
        .on_conflict_do_nothing()
    )
    for model in FOLLOWING_TABLES:
        await session.execute(
            update(model).where(model.customer_id == event.merged_id).values(customer_id=event.customer_id)
        )
    absorbed = await session.get(CustomerFeatures, event.merged_id)
    survivor = await session.get(CustomerFeatures, event.customer_id)
    earlier = (
        absorbed is not None
        and survivor is not None
        and absorbed.registered_at is not None
        and (survivor.registered_at is None or absorbed.registered_at < survivor.registered_at)
    )
    if earlier:  # tenure counts from the first registration (also for rows without registration facts)
        assert survivor is not None
        assert absorbed is not None
        survivor.registered_at = absorbed.registered_at
    await session.execute(delete(CustomerSpend).where(CustomerSpend.customer_id == event.merged_id))
    await session.execute(delete(CustomerFeatures).where(CustomerFeatures.customer_id == event.merged_id))
    await session.flush()
    await feature_store.refresh(session, [event.customer_id])
    token = CAUSE.set("merge")
    try:
        for hook in _HOOKS:  # the absorbed id too: its value row goes, it leaves its rule segments
            await hook(uow, [event.customer_id, event.merged_id])
    finally:
        CAUSE.reset(token)


async def on_customer_unmerged(uow: UnitOfWork, event: CustomerUnmerged) -> None:
    """The restored customer stands alone again: the facts recorded for it, or for customers merged
    into it before, move back to it, and both customers' features (then value, risk and segments) are
    recomputed. Delivered twice, the second delivery finds everything in place and changes nothing."""
    session = uow.session
    restored = event.restored_id
    await session.execute(delete(MergedCustomer).where(MergedCustomer.customer_id == restored))
    members = sorted(await merge_members(session, restored))
    for model in FOLLOWING_TABLES:
        await session.execute(
            update(model)
            .where(model.origin_customer_id.in_(members), model.customer_id != restored)
            .values(customer_id=restored)
        )
    survivor = await current_id(session, event.customer_id)
    await FeatureRepository(session).ensure_customer(restored)
    # registered_at comes from the registration facts again (the survivor's stored value may be the
    # restored customer's earlier registration).
    await session.execute(
        update(CustomerFeatures)
        .where(CustomerFeatures.customer_id.in_([restored, survivor]))
        .values(registered_at=None)
    )
    await session.flush()
    token = CAUSE.set("unmerge")
    try:
        await refreshed(uow, [survivor, restored])
    finally:
        CAUSE.reset(token)


async def on_customer_erased(uow: UnitOfWork, event: CustomerErased) -> None:
    """What was derived about the erased customers goes: facts, features, spend."""
    session = uow.session
    ids = list(event.erased_ids)
    for model in FACT_TABLES:
        await session.execute(delete(model).where(model.customer_id.in_(ids)))
    await session.execute(delete(CustomerSpend).where(CustomerSpend.customer_id.in_(ids)))
    await session.execute(
        update(CustomerFeatures)
        .where(CustomerFeatures.customer_id.in_(ids))
        .values(erased=True, updated_at=datetime.now(UTC))
    )
    await refreshed(uow, ids)


async def features_of(uow: UnitOfWork, customer_id: str) -> tuple[CustomerFeatures, list[CustomerSpend]]:
    async with uow:
        session = uow.session
        current = await current_id(session, customer_id)
        row = await session.get(CustomerFeatures, current)
        if row is None:
            raise NotFound(f"no features for customer {customer_id} yet", customer_id=customer_id)
        spend = await FeatureRepository(session).spend(current)
    return row, spend


async def features(uow: UnitOfWork, customer_id: str) -> FeaturesOut:
    row, spend = await features_of(uow, customer_id)
    return FeaturesOut.model_validate(
        {
            **{c.key: getattr(row, c.key) for c in CustomerFeatures.__table__.columns},  # type: ignore[attr-defined]
            "spend": [
                SpendOut(currency=s.currency, purchase_count=s.purchase_count, total_minor=s.total_minor)
                for s in spend
            ],
        }
    )


async def analyze(session: AsyncSession, *tables: str) -> None:
    """Fresh planner statistics for tables just rewritten wholesale in this transaction (PostgreSQL):
    the set-based statements that follow are planned for their real size."""
    if session.get_bind().dialect.name == "postgresql":
        for table in tables:
            await session.execute(text(f"ANALYZE {table}"))


async def recompute(uow: UnitOfWork) -> int:
    """Every customer's features from the facts, as a replay of every event would give them."""
    async with uow:
        count = await feature_store.recompute_all(uow.session)
        await analyze(uow.session, "customer_features", "customer_spend")
        batched = [hook for hook in _HOOKS if hook not in _POPULATION_HOOKS]
        if batched:
            ids = list(await uow.session.scalars(select(CustomerFeatures.customer_id)))
            for start in range(0, len(ids), HOOK_BATCH):  # bounded IN lists (≤ 32,767 parameters)
                for hook in _HOOKS:
                    if hook in _POPULATION_HOOKS:
                        continue
                    await hook(uow, ids[start : start + HOOK_BATCH])
        for hook in _HOOKS:  # in registration order, each over everyone at once
            if hook in _POPULATION_HOOKS:
                await _POPULATION_HOOKS[hook](uow)
        await uow.commit()
    return count
