"""Segmentation keeps each customer's loyalty facts — memberships and tiers, completed referrals, points
earned and redeemed — from the loyalty service's events: each counted once however often it arrives,
a late tier change older than the stored one ignored, the features equal to a recompute, usable in
segment rules (`referrals_made`, `loyalty_tier`) and by the ladder (a referrer is an advocate), and
following merges and unmerges like every other fact."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from services.segmentation import features as feature_store
from services.segmentation import service
from services.segmentation.app import build
from services.segmentation.models import CustomerFeatures, LoyaltyMembershipFact, ReferralFact
from services.segmentation.segments import service as segments
from services.segmentation.segments.models import SegmentMember
from services.segmentation.segments.rules import FIELDS
from services.segmentation.segments.schemas import SegmentIn
from services.segmentation.settings import load_settings
from services.segmentation.value.models import CustomerValue
from shared.contracts.identity import CustomerMerged, CustomerRegistered, CustomerUnmerged
from shared.contracts.interactions import PurchaseLine, PurchaseRecorded, SurveyAnswered
from shared.contracts.loyalty import (
    MemberEnrolled,
    PointsEarned,
    PointsRedeemed,
    ReferralCompleted,
    TierChanged,
)
from shared.events.envelope import EventPayload
from shared.messaging.bus import InProcessBus
from shared.runtime import ServiceRuntime

NOW = datetime.now(UTC).replace(microsecond=0)
A, B, C = "cust-a", "cust-b", "cust-c"
LOYALTY_COLUMNS = (
    "loyalty_member",
    "loyalty_programs",
    "loyalty_tier",
    "member_since",
    "referrals_made",
    "points_earned",
    "points_redeemed",
)


def ago(days: int) -> datetime:
    return NOW - timedelta(days=days)


def enrolled(member_id: str, customer_id: str, days: int, program_id: str = "default") -> MemberEnrolled:
    return MemberEnrolled(
        customer_id=customer_id,
        program_id=program_id,
        member_id=member_id,
        card_number="7000000000000001",
        enrolled_at=ago(days),
    )


def tier(
    member_id: str, customer_id: str, days: int, to: str | None, program_id: str = "default"
) -> TierChanged:
    return TierChanged(
        customer_id=customer_id,
        program_id=program_id,
        member_id=member_id,
        from_tier=None,
        to_tier=to,
        direction="upgrade",
        changed_at=ago(days),
    )


def referral(referrer: str, referred: str, days: int, program_id: str = "default") -> ReferralCompleted:
    return ReferralCompleted(
        customer_id=referrer, referred_customer_id=referred, program_id=program_id, completed_at=ago(days)
    )


def earned(transaction_id: str, customer_id: str, points: int, days: int) -> PointsEarned:
    return PointsEarned(
        customer_id=customer_id,
        transaction_id=transaction_id,
        points=points,
        reason="purchase",
        balance_after=points,
        occurred_at=ago(days),
    )


def redeemed(transaction_id: str, customer_id: str, points: int, days: int) -> PointsRedeemed:
    return PointsRedeemed(
        customer_id=customer_id,
        program_id="default",
        transaction_id=transaction_id,
        points=points,
        balance_after=0,
        occurred_at=ago(days),
    )


def bought(purchase_id: str, customer_id: str, days: int, minor: int = 2000) -> PurchaseRecorded:
    return PurchaseRecorded(
        purchase_id=purchase_id,
        customer_id=customer_id,
        channel="store",
        occurred_at=ago(days),
        currency="EUR",
        total_minor=minor,
        lines=[PurchaseLine(sku="SKU-1", quantity=1, unit_price_minor=minor)],
    )


HANDLERS: dict[type[EventPayload], Any] = {
    CustomerRegistered: service.on_customer_registered,
    CustomerMerged: service.on_customer_merged,
    CustomerUnmerged: service.on_customer_unmerged,
    PurchaseRecorded: service.on_purchase_recorded,
    SurveyAnswered: service.on_survey_answered,
    MemberEnrolled: service.on_member_enrolled,
    TierChanged: service.on_tier_changed,
    ReferralCompleted: service.on_referral_completed,
    PointsEarned: service.on_points,
    PointsRedeemed: service.on_points,
}


async def deliver(runtime: ServiceRuntime, events: Sequence[EventPayload]) -> None:
    for event in events:
        async with runtime.uow() as uow:
            await HANDLERS[type(event)](uow, event)
            await uow.commit()


async def runtime_on(url: str) -> ServiceRuntime:
    runtime = build(load_settings(database_url=url), InProcessBus())
    await runtime.start()
    await runtime.relay.stop()
    return runtime


@pytest.fixture
async def runtime(tmp_path: Path) -> AsyncIterator[ServiceRuntime]:
    rt = await runtime_on(f"sqlite+aiosqlite:///{tmp_path / 'seg.db'}")
    yield rt
    await rt.stop()


async def snapshot(runtime: ServiceRuntime) -> dict[str, dict[str, Any]]:
    columns = [c.key for c in CustomerFeatures.__table__.columns if c.key != "updated_at"]
    async with runtime.sessions() as session:
        rows = list(await session.scalars(select(CustomerFeatures).order_by(CustomerFeatures.customer_id)))
    return {r.customer_id: {c: getattr(r, c) for c in columns} for r in rows}


async def loyalty(runtime: ServiceRuntime, customer_id: str) -> dict[str, Any]:
    f, _ = await service.features_of(runtime.uow(), customer_id)
    return {c: getattr(f, c) for c in LOYALTY_COLUMNS}


async def members_of(runtime: ServiceRuntime, segment_id: str) -> set[str]:
    async with runtime.sessions() as session:
        return set(
            await session.scalars(
                select(SegmentMember.customer_id).where(SegmentMember.segment_id == segment_id)
            )
        )


# Customer A: a default-program member (gold), a member of "vip" too, two referrals, points.
STORY: list[EventPayload] = [
    CustomerRegistered(customer_id=A, kind="person", status="customer", registered_at=ago(400)),
    enrolled("m-a-vip", A, 300, "vip"),
    tier("m-a-vip", A, 200, "platinum", "vip"),
    enrolled("m-a", A, 100),
    tier("m-a", A, 90, "silver"),
    tier("m-a", A, 30, "gold"),
    referral(A, "friend-1", 60),
    referral(A, "friend-2", 20, "vip"),
    earned("t-1", A, 120, 50),
    earned("t-2", A, 80, 10),
    redeemed("t-3", A, 50, 5),
]


async def test_every_loyalty_event_counts_once_and_a_late_tier_change_is_ignored(
    runtime: ServiceRuntime,
) -> None:
    await deliver(runtime, STORY)
    expected = {
        "loyalty_member": True,
        "loyalty_programs": ["default", "vip"],
        "loyalty_tier": "gold",  # the default program's tier, even though "vip" was joined first
        "member_since": ago(300),
        "referrals_made": 2,
        "points_earned": 200,
        "points_redeemed": 50,
    }
    assert await loyalty(runtime, A) == expected
    once = await snapshot(runtime)

    await deliver(runtime, STORY)  # every event delivered a second time
    assert await snapshot(runtime) == once
    # A tier change older than the stored one arrives late: ignored (and so is its redelivery).
    await deliver(runtime, [tier("m-a", A, 60, "bronze"), tier("m-a", A, 60, "bronze")])
    assert (await loyalty(runtime, A))["loyalty_tier"] == "gold"
    async with runtime.sessions() as session:
        facts = list(await session.scalars(select(LoyaltyMembershipFact).order_by("member_id")))
        referrals = list(await session.scalars(select(ReferralFact)))
    assert [(m.member_id, m.tier, m.tier_changed_at) for m in facts] == [
        ("m-a", "gold", ago(30)),
        ("m-a-vip", "platinum", ago(200)),
    ]
    assert len(referrals) == 2
    # A newer downgrade does apply (a tier may also be dropped altogether: None).
    await deliver(runtime, [tier("m-a", A, 1, None)])
    assert (await loyalty(runtime, A))["loyalty_tier"] is None


async def test_a_tier_change_before_the_enrolment_and_a_customer_outside_the_default_program(
    runtime: ServiceRuntime,
) -> None:
    # C joins two programs other than the default one: the tier of the one joined first counts.
    await deliver(
        runtime,
        [
            tier("m-c-b", C, 5, "blue", "beta"),  # before its enrolment (the topic is not ordered here)
            enrolled("m-c-a", C, 40, "alpha"),
            tier("m-c-a", C, 35, "amber", "alpha"),
        ],
    )
    f = await loyalty(runtime, C)
    assert (f["loyalty_programs"], f["loyalty_tier"], f["member_since"]) == (
        ["alpha", "beta"],
        "amber",  # beta's enrolment is not known yet: alpha counts
        ago(40),
    )
    await deliver(runtime, [enrolled("m-c-b", C, 60, "beta"), enrolled("m-c-b", C, 60, "beta")])
    f = await loyalty(runtime, C)
    assert (f["loyalty_tier"], f["member_since"]) == ("blue", ago(60))  # beta was joined first
    async with runtime.sessions() as session:
        beta = await session.get(LoyaltyMembershipFact, "m-c-b")
    assert beta is not None
    assert (beta.enrolled_at, beta.tier, beta.tier_changed_at) == (ago(60), "blue", ago(5))


async def test_the_incremental_features_equal_a_recompute(runtime: ServiceRuntime) -> None:
    await deliver(
        runtime,
        [
            *STORY,
            CustomerRegistered(customer_id=B, kind="person", status="customer", registered_at=ago(500)),
            bought("p-b1", B, 70),
            earned("t-b1", B, 20, 70),  # a points fact for a customer with features: the quick path
            earned("t-c1", C, 15, 3),  # … and for one segmentation never heard of
            tier("m-c", C, 2, "silver"),
            referral(B, "friend-3", 8),
        ],
    )
    incremental = await snapshot(runtime)
    assert incremental[C]["points_earned"] == 15
    assert incremental[B]["referrals_made"] == 1
    assert incremental[C]["loyalty_tier"] == "silver"
    async with runtime.sessions() as session:  # the recompute really rewrites the rows
        await session.execute(
            CustomerFeatures.__table__.update().values(  # type: ignore[attr-defined]
                loyalty_member=False, loyalty_programs=[], loyalty_tier=None, referrals_made=0
            )
        )
        await session.commit()
    await service.recompute(runtime.uow())
    assert await snapshot(runtime) == incremental


async def test_segments_on_referrals_and_tier_and_the_ladder_sees_referrals(runtime: ServiceRuntime) -> None:
    assert {"referrals_made", "loyalty_tier", "loyalty_member", "member_since"} <= set(FIELDS)
    referrers = await segments.create(
        runtime.uow(),
        SegmentIn(name="Referrers", rule={"field": "referrals_made", "op": ">=", "value": 2}),
    )
    gold = await segments.create(
        runtime.uow(),
        SegmentIn(
            name="Gold members",
            rule={
                "all": [
                    {"field": "loyalty_tier", "op": "=", "value": "gold"},
                    {"field": "loyalty_programs", "op": "contains", "value": "default"},
                    {"field": "membership_days", "op": ">=", "value": 30},
                ]
            },
        ),
    )
    # A supporter (two purchases, CSAT 5), not a promoter.
    await deliver(
        runtime,
        [
            bought("p-1", A, 50),
            bought("p-2", A, 10),
            SurveyAnswered(survey_id="s-1", customer_id=A, answered_at=ago(9), channel="web", csat=5),
            enrolled("m-a", A, 100),
            referral(A, "friend-1", 8),
        ],
    )
    async with runtime.sessions() as session:
        stage = await session.scalar(select(CustomerValue.ladder_stage).where(CustomerValue.customer_id == A))
    assert stage == "advocate"  # a supporter who referred a customer
    assert A not in await members_of(runtime, referrers.segment.id)  # one referral only
    assert A not in await members_of(runtime, gold.segment.id)

    await deliver(runtime, [referral(A, "friend-2", 4), tier("m-a", A, 3, "gold")])
    assert A in await members_of(runtime, referrers.segment.id)
    assert A in await members_of(runtime, gold.segment.id)

    await deliver(runtime, [tier("m-a", A, 1, "silver")])  # a downgrade: out of the gold segment
    assert A not in await members_of(runtime, gold.segment.id)
    assert A in await members_of(runtime, referrers.segment.id)


MERGE = CustomerMerged(customer_id=A, merged_id=B, merge_id="m-1", method="manual", merged_at=ago(15))
UNMERGE = CustomerUnmerged(customer_id=A, restored_id=B, merge_id="m-1", unmerged_at=NOW)
BEFORE_MERGE: list[EventPayload] = [
    enrolled("m-a", A, 100),
    tier("m-a", A, 50, "gold"),
    referral(A, "friend-1", 40),
    earned("t-a1", A, 100, 40),
    enrolled("m-b", B, 200),
    tier("m-b", B, 150, "silver"),
    enrolled("m-b-vip", B, 180, "vip"),
    referral(B, "friend-2", 30),
    referral(B, "friend-3", 25),
    earned("t-b1", B, 70, 30),
]
# About B, reaching segmentation after the merge (they name B: loyalty's events may lag).
AFTER_MERGE: list[EventPayload] = [
    referral(B, "friend-4", 10),
    tier("m-b", B, 9, "bronze"),
    redeemed("t-b2", B, 20, 8),
]


async def test_a_merge_moves_the_loyalty_facts_and_an_unmerge_gives_them_back(tmp_path: Path) -> None:
    await merge_round_trip(
        f"sqlite+aiosqlite:///{tmp_path / 'merged.db'}", f"sqlite+aiosqlite:///{tmp_path / 'plain.db'}"
    )


async def test_loyalty_facts_merge_segments_and_recompute_on_postgres(
    pg_database: str, pg_database_2: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Rows written a few at a time, so the recompute takes PostgreSQL's COPY path (JSON lists and all).
    monkeypatch.setattr(feature_store, "WRITE_BATCH", 1)
    await merge_round_trip(pg_database, pg_database_2)
    runtime = await runtime_on(pg_database)
    try:
        created = await segments.create(
            runtime.uow(),
            SegmentIn(
                name="Advocates by referral",
                rule={
                    "all": [
                        {"field": "referrals_made", "op": ">=", "value": 2},
                        {"field": "loyalty_tier", "op": "in", "value": ["bronze", "silver"]},
                        {"field": "loyalty_programs", "op": "contains", "value": "vip"},
                    ]
                },
            ),
        )
        assert await members_of(runtime, created.segment.id) == {B}
        await deliver(runtime, [referral(A, "friend-5", 1), tier("m-a", A, 1, "silver")])
        assert await members_of(runtime, created.segment.id) == {B}  # A is in no "vip" program
        await deliver(runtime, [enrolled("m-a-vip", A, 1, "vip")])
        assert await members_of(runtime, created.segment.id) == {A, B}
        incremental = await snapshot(runtime)
        await service.recompute(runtime.uow())
        assert await snapshot(runtime) == incremental
    finally:
        await runtime.stop()


async def merge_round_trip(merged_url: str, plain_url: str) -> None:
    """Events into two databases, one with a merge then its unmerge (twice), one without."""
    merged, plain = await runtime_on(merged_url), await runtime_on(plain_url)
    try:
        await deliver(merged, [*BEFORE_MERGE, MERGE, *AFTER_MERGE])
        a = await loyalty(merged, A)
        assert a == {
            "loyalty_member": True,
            "loyalty_programs": ["default", "vip"],
            "loyalty_tier": "gold",  # A's own default membership, not the one B brought
            "member_since": ago(200),  # B's enrolment
            "referrals_made": 4,
            "points_earned": 170,
            "points_redeemed": 20,
        }
        assert (await service.features_of(merged.uow(), B))[0].customer_id == A
        merged_state = await snapshot(merged)
        await service.recompute(merged.uow())
        assert await snapshot(merged) == merged_state

        await deliver(merged, [UNMERGE])
        once = await snapshot(merged)
        await deliver(merged, [UNMERGE])  # delivered again: nothing changes
        assert await snapshot(merged) == once
        assert await loyalty(merged, B) == {
            "loyalty_member": True,
            "loyalty_programs": ["default", "vip"],
            "loyalty_tier": "bronze",
            "member_since": ago(200),
            "referrals_made": 3,
            "points_earned": 70,
            "points_redeemed": 20,
        }
        assert (await loyalty(merged, A))["referrals_made"] == 1

        # As if they had never been merged: the same loyalty features as a world without the merge.
        await deliver(plain, [*BEFORE_MERGE, *AFTER_MERGE])
        never = await snapshot(plain)
        for customer in (A, B):
            assert {c: once[customer][c] for c in LOYALTY_COLUMNS} == {
                c: never[customer][c] for c in LOYALTY_COLUMNS
            }
    finally:
        await merged.stop()
        await plain.stop()


def test_a_features_insert_stays_under_the_parameter_limit() -> None:
    """More columns mean fewer rows per INSERT … VALUES (asyncpg takes at most 32,767 parameters)."""
    columns = len(CustomerFeatures.__table__.columns)
    assert columns * feature_store.WRITE_BATCH <= 32_767
