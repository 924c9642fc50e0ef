"""Programs and rules on the loyalty service: earning rules in their documented order, the dry run
agreeing with real earning, caps per period, validity windows, bonus events granted exactly once
(enrolment, survey, birthday, custom, referral — each trigger delivered twice), tiers (upgrade at once,
downgrade only at a period's review after the grace period, one warning before), and validation errors
naming the exact field. The loyalty service runs alone (SQLite file, or PostgreSQL for the last test);
time is driven by the injectable `now` of the service functions and scheduled passes."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from math import floor
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from services.loyalty import segments, service
from services.loyalty.app import build
from services.loyalty.models import LedgerTransaction, Member
from services.loyalty.rules import jobs
from services.loyalty.rules.models import Referral
from services.loyalty.settings import load_settings
from shared.contracts.identity import CustomerMerged
from shared.contracts.interactions import PurchaseLine, PurchaseRecorded, PurchaseRefunded, SurveyAnswered
from shared.contracts.loyalty import PointsEarned, ReferralCompleted, TierChanged, TierDowngradeWarning
from shared.contracts.segmentation import SegmentEntered
from shared.events.envelope import EventPayload, new_event
from shared.messaging.bus import InProcessBus
from shared.messaging.consumer import Delivery
from shared.runtime import ServiceRuntime

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
SHOES = {"sku": "SKU-1", "category": "shoes", "quantity": 2, "unit_price_minor": 4999}
SOCKS = {"sku": "SKU-2", "category": "socks", "quantity": 1, "unit_price_minor": 1000}


@dataclass
class Loyalty:
    runtime: ServiceRuntime
    client: httpx.AsyncClient

    async def program(self, program_id: str, **extra: Any) -> dict[str, Any]:
        body = {"id": program_id, "name": program_id.title(), "currency": "EUR", **extra}
        response = await self.client.post("/programs", json=body)
        assert response.status_code == 201, response.text
        return response.json()  # type: ignore[no-any-return]

    async def rule(self, program_id: str, **body: Any) -> dict[str, Any]:
        response = await self.client.post(f"/programs/{program_id}/rules", json=body)
        assert response.status_code == 201, response.text
        return response.json()  # type: ignore[no-any-return]

    async def tiers(self, program_id: str, tiers: list[dict[str, Any]], **extra: Any) -> None:
        response = await self.client.put(f"/programs/{program_id}/tiers", json={"tiers": tiers, **extra})
        assert response.status_code == 200, response.text

    async def enrol(self, program_id: str, customer_id: str, **extra: Any) -> dict[str, Any]:
        response = await self.client.post(
            f"/programs/{program_id}/members", json={"customer_id": customer_id, **extra}
        )
        assert response.status_code in (200, 201), response.text
        return response.json()  # type: ignore[no-any-return]

    async def buy(
        self,
        customer_id: str,
        lines: list[dict[str, Any]],
        *,
        now: datetime,
        purchase_id: str | None = None,
        channel: str = "store",
    ) -> PurchaseRecorded:
        purchase = PurchaseRecorded(
            purchase_id=purchase_id or str(uuid.uuid4()),
            customer_id=customer_id,
            channel=channel,
            occurred_at=now,
            currency="EUR",
            total_minor=sum(line["quantity"] * line["unit_price_minor"] for line in lines),
            lines=[PurchaseLine(**line) for line in lines],
            payment_status="paid",
        )
        async with self.runtime.uow() as uow:
            await service.earn_for_purchase(uow, purchase, now=now)
            await uow.commit()
        return purchase

    async def deliver(self, payload: EventPayload) -> None:
        """Deliver an event as the bus would, in a fresh envelope (a redelivery under a new id gets
        past the inbox: only the handlers' own idempotency stops it)."""
        event = new_event(payload, source="/crm/test")
        dead = await self.runtime.consumer.handle_batch([Delivery(event=event, topic=payload.topic.name)])
        assert dead == []

    async def events(self, payload_class: type[EventPayload]) -> list[dict[str, Any]]:
        outbox = self.runtime.tables.outbox
        async with self.runtime.sessions() as session:
            rows = await session.execute(
                select(outbox.c.envelope)
                .where(outbox.c.type == payload_class.full_type())
                .order_by(outbox.c.id)
            )
            return [row[0]["data"] for row in rows]

    async def transactions(
        self, program_id: str, member_id: str, kind: str | None = None
    ) -> list[LedgerTransaction]:
        async with self.runtime.sessions() as session:
            query = select(LedgerTransaction).where(
                LedgerTransaction.program_id == program_id, LedgerTransaction.member_id == member_id
            )
            if kind is not None:
                query = query.where(LedgerTransaction.kind == kind)
            return list(await session.scalars(query.order_by(LedgerTransaction.created_at)))

    async def member(self, member_id: str) -> Member:
        async with self.runtime.sessions() as session:
            member = await session.get(Member, member_id)
            assert member is not None
            return member

    async def points(self, program_id: str, customer_id: str) -> int:
        response = await self.client.get(f"/members/{customer_id}/balance", params={"program": program_id})
        assert response.status_code == 200, response.text
        return int(response.json()["points"])


async def _harness(database_url: str | None, tmp_path: Path) -> AsyncIterator[Loyalty]:
    overrides: dict[str, Any] = {"var_dir": tmp_path}
    if database_url is not None:
        overrides["database_url"] = database_url
    runtime = build(load_settings(**overrides), InProcessBus())
    await runtime.start()
    await runtime.relay.stop()  # events stay in the outbox, where the tests read them
    transport = httpx.ASGITransport(app=runtime.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://loyalty") as client:
        yield Loyalty(runtime, client)
    await runtime.stop()


@pytest.fixture
async def loyalty(tmp_path: Path) -> AsyncIterator[Loyalty]:
    async for harness in _harness(None, tmp_path):
        yield harness


SILVER_GOLD = [
    {
        "name": "silver",
        "threshold": 100,
        "measure": "qualifying_points",
        "window": {"kind": "rolling_days", "days": 365},
        "benefits": {
            "earn_multiplier": {"numerator": 3, "denominator": 2},
            "reward_access": ["silver-gifts"],
        },
    },
    {
        "name": "gold",
        "threshold": 1000,
        "measure": "qualifying_points",
        "window": {"kind": "rolling_days", "days": 365},
        "benefits": {"earn_multiplier": {"numerator": 2, "denominator": 1}},
    },
]


# --- earning rules ----------------------------------------------------------------------------------


async def test_rule_order_tier_segment_category_and_dry_run_equals_earning(loyalty: Loyalty) -> None:
    await loyalty.program("club", timezone="Europe/Paris")
    await loyalty.tiers("club", SILVER_GOLD)
    vip = await loyalty.rule(
        "club",
        name="VIP",
        kind="multiplier",
        priority=20,
        definition={"factor": {"numerator": 3, "denominator": 2}, "conditions": {"segments": ["seg-vip"]}},
    )
    shoes_x2 = await loyalty.rule(
        "club",
        name="Shoes double",
        kind="multiplier",
        priority=10,
        definition={"factor": {"numerator": 2, "denominator": 1}, "conditions": {"categories": ["shoes"]}},
    )
    shoe_bonus = await loyalty.rule(
        "club",
        name="Shoe bonus",
        kind="bonus_points",
        definition={"points": 10, "per": "unit", "conditions": {"categories": ["shoes"]}},
    )
    customer = str(uuid.uuid4())
    member = await loyalty.enrol("club", customer)
    async with loyalty.runtime.uow() as uow:
        await segments.apply(
            uow.session,
            SegmentEntered(
                segment_id="seg-vip", segment_name="VIP", customer_id=customer, at=T0, cause="event"
            ),
        )
        await uow.commit()

    purchase = {"currency": "EUR", "total_minor": 10998, "channel": "store", "occurred_at": T0.isoformat()}
    dry = await loyalty.client.post(
        "/programs/club/dry-run",
        json={"customer_id": customer, "purchase": {**purchase, "lines": [SHOES, SOCKS]}},
    )
    assert dry.status_code == 200, dry.text
    body = dry.json()
    # base 109 shared pro rata (shoes 9998/10998, socks 1000/10998); +20 on shoes; shoes ×2; VIP ×3/2
    shoes_share = Fraction(109 * 9998, 10998)
    socks_share = Fraction(109 * 1000, 10998)
    expected = floor(((shoes_share + 20) * 2 + socks_share) * Fraction(3, 2))
    assert body["points"] == expected == 372
    assert body["qualifying"] == 109
    assert [r["rule_id"] for r in body["rules"]] == ["base", shoe_bonus["id"], shoes_x2["id"], vip["id"]]
    assert sum(r["points"] for r in body["rules"]) == expected
    assert await loyalty.transactions("club", member["id"], "earn") == []  # the dry run wrote nothing

    await loyalty.buy(customer, [SHOES, SOCKS], now=T0)
    [earned] = await loyalty.transactions("club", member["id"], "earn")
    assert earned.details["points"] == body["points"]
    assert earned.details["qualifying"] == body["qualifying"]
    assert earned.details["rules"] == body["rules"]
    assert earned.details["total_minor"] == 10998
    assert await loyalty.points("club", customer) == expected

    # 109 qualifying points reach silver (100): upgraded at once, and the tier multiplier now applies
    changed = [e for e in await loyalty.events(TierChanged) if e["program_id"] == "club"]
    assert [(e["from_tier"], e["to_tier"], e["direction"]) for e in changed] == [(None, "silver", "upgrade")]
    assert (await loyalty.member(member["id"])).tier == "silver"
    again = (
        await loyalty.client.post(
            "/programs/club/dry-run",
            json={"member_id": member["id"], "purchase": {**purchase, "lines": [SOCKS]}},
        )
    ).json()
    assert [r["rule_id"] for r in again["rules"]] == ["base", "tier:silver", vip["id"]]
    assert again["points"] == floor(
        Fraction(109) * Fraction(3, 2) * Fraction(3, 2)
    )  # total 10998, socks only
    later = T0 + timedelta(hours=1)
    bought = await loyalty.buy(customer, [SOCKS], now=later)
    dry_later = (
        await loyalty.client.post(
            "/programs/club/dry-run",
            json={
                "member_id": member["id"],
                "purchase": {
                    "currency": "EUR",
                    "total_minor": 1000,
                    "occurred_at": later.isoformat(),
                    "lines": [SOCKS],
                },
            },
        )
    ).json()
    tx = [
        t
        for t in await loyalty.transactions("club", member["id"], "earn")
        if t.details["purchase_id"] == bought.purchase_id
    ]
    assert (
        tx[0].details["points"]
        == dry_later["points"]
        == floor(Fraction(10) * Fraction(3, 2) * Fraction(3, 2))
    )

    status = (await loyalty.client.get(f"/programs/club/members/{member['id']}/tier")).json()
    assert status["tier"] == "silver"
    assert status["benefits"]["reward_access"] == ["silver-gifts"]
    assert status["next_tier"]["tier"] == "gold"
    assert status["next_tier"]["missing"] == 1000 - 119
    assert status["will_downgrade"] is False

    # deactivating a rule: it stops firing at once, is kept and listed only on request
    deleted = await loyalty.client.delete(f"/programs/club/rules/{vip['id']}")
    assert deleted.status_code == 200
    assert deleted.json()["active"] is False
    assert deleted.json()["version"] == 2
    third = (
        await loyalty.client.post(
            "/programs/club/dry-run",
            json={"member_id": member["id"], "purchase": {**purchase, "lines": [SOCKS]}},
        )
    ).json()
    assert vip["id"] not in [r["rule_id"] for r in third["rules"]]
    listed = (await loyalty.client.get("/programs/club/rules")).json()
    assert [r["id"] for r in listed] == [shoe_bonus["id"], shoes_x2["id"]]
    everything = (await loyalty.client.get("/programs/club/rules", params={"include_inactive": True})).json()
    assert len(everything) == 3


async def test_caps_per_member_and_day(loyalty: Loyalty) -> None:
    await loyalty.program("capped", timezone="Europe/Paris")
    cap = await loyalty.rule(
        "capped",
        name="Daily cap",
        kind="cap",
        definition={"max_points": 100, "period": "day", "applies_to": ["purchase"]},
    )
    customer = str(uuid.uuid4())
    member = await loyalty.enrol("capped", customer)
    eighty = [{"sku": "X", "quantity": 1, "unit_price_minor": 8000}]
    fifty = [{"sku": "X", "quantity": 1, "unit_price_minor": 5000}]
    await loyalty.buy(customer, eighty, now=T0)
    second = await loyalty.buy(customer, fifty, now=T0 + timedelta(hours=2))
    third = await loyalty.buy(customer, fifty, now=T0 + timedelta(hours=3))
    # midnight in Paris (23:00 UTC) starts a new day
    fourth = await loyalty.buy(customer, fifty, now=datetime(2026, 3, 2, 23, 30, tzinfo=UTC))
    earned = {t.details["purchase_id"]: t for t in await loyalty.transactions("capped", member["id"], "earn")}
    assert earned[second.purchase_id].details["points"] == 20
    assert earned[second.purchase_id].details["rules"][-1] == {
        "rule_id": cap["id"],
        "name": "Daily cap",
        "points": -30,
        "detail": "at most 100 point(s) per day: 80 already earned, 20 left",
    }
    assert earned[second.purchase_id].details["qualifying"] == 50  # caps never cut tier qualification
    assert third.purchase_id not in earned or earned[third.purchase_id].details["points"] == 0
    assert earned[fourth.purchase_id].details["points"] == 50
    assert await loyalty.points("capped", customer) == 150


async def test_validity_window(loyalty: Loyalty) -> None:
    await loyalty.program("season")
    start = datetime(2026, 12, 1, tzinfo=UTC)
    end = datetime(2027, 1, 1, tzinfo=UTC)
    promo = await loyalty.rule(
        "season",
        name="December",
        kind="multiplier",
        definition={"factor": {"numerator": 2, "denominator": 1}},
        valid_from=start.isoformat(),
        valid_until=end.isoformat(),
    )

    async def points_at(at: datetime) -> int:
        body = {"purchase": {"currency": "EUR", "total_minor": 1000, "occurred_at": at.isoformat()}}
        response = await loyalty.client.post("/programs/season/dry-run", json=body)
        assert response.status_code == 200, response.text
        return int(response.json()["points"])

    assert await points_at(start - timedelta(seconds=1)) == 10
    assert await points_at(start) == 20
    assert await points_at(end - timedelta(seconds=1)) == 20
    assert await points_at(end) == 10
    replaced = await loyalty.client.put(
        f"/programs/season/rules/{promo['id']}",
        json={
            "name": "December",
            "kind": "multiplier",
            "definition": {"factor": {"numerator": 3, "denominator": 1}},
        },
    )
    assert replaced.status_code == 200
    assert replaced.json()["version"] == 2
    assert await points_at(start - timedelta(days=100)) == 30  # no window any more


# --- bonus events -----------------------------------------------------------------------------------


async def test_bonus_events_are_granted_exactly_once(loyalty: Loyalty) -> None:
    await loyalty.program("club", timezone="Pacific/Auckland")
    bonuses = {
        "enrolment": 50,
        "survey_answered": 20,
        "birthday": 100,
        "custom:app_download": 30,
    }
    for event, points in bonuses.items():
        await loyalty.rule(
            "club", name=event, kind="event_bonus", definition={"event": event, "points": points}
        )
    customer = str(uuid.uuid4())
    member = await loyalty.enrol("club", customer, birth_date="1990-06-10")
    again = await loyalty.enrol("club", customer, birth_date="1990-06-10")
    assert again["id"] == member["id"]
    other = await loyalty.enrol("club", str(uuid.uuid4()), birth_date="1985-01-01")

    async def bonus_refs(member_id: str) -> list[str]:
        return [t.reference for t in await loyalty.transactions("club", member_id, "bonus")]

    assert await bonus_refs(member["id"]) == [f"bonus:club:enrolment:{member['id']}"]

    answer = SurveyAnswered(survey_id="survey-1", customer_id=customer, answered_at=T0, channel="web", csat=5)
    await loyalty.deliver(answer)
    await loyalty.deliver(answer)
    assert (await bonus_refs(member["id"])).count("bonus:club:survey_answered:survey-1") == 1

    # 10 June in Auckland begins at 12:00 UTC on 9 June
    assert (await jobs.run_once(loyalty.runtime.uow, now=datetime(2026, 6, 9, 11, 0, tzinfo=UTC)))[
        "birthday_bonuses"
    ] == 0
    birthday = datetime(2026, 6, 9, 13, 0, tzinfo=UTC)
    assert (await jobs.run_once(loyalty.runtime.uow, now=birthday))["birthday_bonuses"] == 1
    assert (await jobs.run_once(loyalty.runtime.uow, now=birthday + timedelta(hours=5)))[
        "birthday_bonuses"
    ] == 0
    next_year = datetime(2027, 6, 10, 1, 0, tzinfo=UTC)
    assert (await jobs.run_once(loyalty.runtime.uow, now=next_year))["birthday_bonuses"] == 1
    refs = await bonus_refs(member["id"])
    assert [r for r in refs if ":birthday:" in r] == [
        f"bonus:club:birthday:{member['id']}:2026",
        f"bonus:club:birthday:{member['id']}:2027",
    ]
    assert [r for r in await bonus_refs(other["id"]) if ":birthday:" in r] == []

    url = f"/programs/club/members/{member['id']}/bonus-events"
    first = await loyalty.client.post(url, json={"event": "app_download", "reference": "install-1"})
    assert first.status_code == 201, first.text
    assert first.json()["granted"] is True
    assert first.json()["points"] == 30
    second = await loyalty.client.post(url, json={"event": "app_download", "reference": "install-1"})
    assert second.status_code == 200
    assert second.json()["duplicate"] is True
    assert second.json()["transaction_id"] == first.json()["transaction_id"]
    unknown = await loyalty.client.post(url, json={"event": "moon_landing", "reference": "x"})
    assert unknown.status_code == 422
    assert unknown.json()["errors"][0]["field"] == "body.event"

    assert await loyalty.points("club", customer) == 50 + 20 + 100 + 100 + 30
    earned_events = [e for e in await loyalty.events(PointsEarned) if e["customer_id"] == customer]
    assert sorted(e["reason"] for e in earned_events) == sorted(
        [
            "bonus:enrolment",
            "bonus:survey_answered",
            "bonus:birthday",
            "bonus:birthday",
            "bonus:custom:app_download",
        ]
    )


async def test_a_survey_answered_under_a_merged_id_earns_for_the_survivor(loyalty: Loyalty) -> None:
    await loyalty.program("club")
    await loyalty.rule(
        "club", name="survey", kind="event_bonus", definition={"event": "survey_answered", "points": 20}
    )
    survivor, absorbed = str(uuid.uuid4()), str(uuid.uuid4())
    member = await loyalty.enrol("club", survivor)
    await loyalty.deliver(
        CustomerMerged(
            customer_id=survivor,
            merged_id=absorbed,
            merge_id=str(uuid.uuid4()),
            method="manual",
            merged_at=T0,
        )
    )
    await loyalty.deliver(
        SurveyAnswered(survey_id="survey-2", customer_id=absorbed, answered_at=T0, channel="web", csat=4)
    )
    refs = [t.reference for t in await loyalty.transactions("club", member["id"], "bonus")]
    assert refs.count("bonus:club:survey_answered:survey-2") == 1


async def test_referral_rewards_both_sides_once_with_a_cap_per_referrer(loyalty: Loyalty) -> None:
    await loyalty.program("club")
    await loyalty.rule(
        "club",
        name="Referrer",
        kind="event_bonus",
        definition={"event": "referral_referrer", "points": 200, "limit": {"count": 1, "period": "month"}},
    )
    await loyalty.rule(
        "club", name="Referee", kind="event_bonus", definition={"event": "referral_referee", "points": 100}
    )
    referrer_customer = str(uuid.uuid4())
    referrer = await loyalty.enrol("club", referrer_customer)
    friend = str(uuid.uuid4())
    referred = await loyalty.enrol("club", friend, referral_code=referrer["referral_code"])
    assert await loyalty.transactions("club", referrer["id"], "bonus") == []  # enrolment alone is not enough

    purchase = await loyalty.buy(friend, [SOCKS], now=T0)
    await loyalty.deliver(purchase)  # the same purchase delivered again
    await loyalty.buy(friend, [SOCKS], now=T0 + timedelta(days=1))  # and a second purchase
    assert [t.details["points"] for t in await loyalty.transactions("club", referrer["id"], "bonus")] == [200]
    assert [t.details["points"] for t in await loyalty.transactions("club", referred["id"], "bonus")] == [100]
    completed = await loyalty.events(ReferralCompleted)
    assert completed == [
        {
            "customer_id": referrer_customer,
            "referred_customer_id": friend,
            "program_id": "club",
            "completed_at": completed[0]["completed_at"],
        }
    ]

    # a second referral the same month: the referee is rewarded, the referrer is over their cap
    second_friend = str(uuid.uuid4())
    second = await loyalty.enrol("club", second_friend, referral_code=referrer["referral_code"])
    await loyalty.buy(second_friend, [SOCKS], now=T0 + timedelta(days=2))
    assert len(await loyalty.transactions("club", referrer["id"], "bonus")) == 1
    assert [t.details["points"] for t in await loyalty.transactions("club", second["id"], "bonus")] == [100]
    async with loyalty.runtime.sessions() as session:
        rows = {r.referred_member_id: r for r in await session.scalars(select(Referral))}
    assert (rows[referred["id"]].referrer_points, rows[referred["id"]].referee_points) == (200, 100)
    assert (rows[second["id"]].referrer_points, rows[second["id"]].referee_points) == (0, 100)
    # next month the referrer may be rewarded again
    third_friend = str(uuid.uuid4())
    await loyalty.enrol("club", third_friend, referral_code=referrer["referral_code"])
    await loyalty.buy(third_friend, [SOCKS], now=T0 + timedelta(days=40))
    assert len(await loyalty.transactions("club", referrer["id"], "bonus")) == 2


# --- tiers ------------------------------------------------------------------------------------------


async def test_downgrade_only_at_period_end_after_grace_with_one_warning(loyalty: Loyalty) -> None:
    await loyalty.program("club")
    # silver: 150.00 spent in the calendar year
    yearly = [
        {"name": "silver", "threshold": 15_000, "measure": "spend_minor", "window": {"kind": "calendar_year"}}
    ]
    await loyalty.tiers("club", yearly, grace_days=30, warning_days=45)
    lapsing, returning = str(uuid.uuid4()), str(uuid.uuid4())
    m1 = await loyalty.enrol("club", lapsing)
    m2 = await loyalty.enrol("club", returning)
    big = [{"sku": "X", "quantity": 1, "unit_price_minor": 15_000}]
    small = [{"sku": "X", "quantity": 1, "unit_price_minor": 14_999}]
    await loyalty.buy(lapsing, small, now=datetime(2026, 2, 1, tzinfo=UTC))
    assert (await loyalty.member(m1["id"])).tier is None
    await loyalty.buy(
        lapsing, [SOCKS], now=datetime(2026, 3, 1, tzinfo=UTC)
    )  # 159.99 in 2026: upgraded at once
    await loyalty.buy(returning, big, now=datetime(2026, 3, 1, tzinfo=UTC))
    assert (await loyalty.member(m1["id"])).tier == "silver"
    assert (await loyalty.member(m1["id"])).tier_since == datetime(2026, 3, 1, tzinfo=UTC)

    async def run(at: datetime) -> dict[str, int]:
        return await jobs.run_once(loyalty.runtime.uow, now=at)

    # 2026 qualified both for silver: the review of the period that ended on 1 January keeps them
    assert (await run(datetime(2027, 1, 30, tzinfo=UTC)))["kept"] == 0  # grace not over yet
    assert (await run(datetime(2027, 1, 31, 1, tzinfo=UTC)))["kept"] == 2
    assert (await run(datetime(2027, 2, 1, tzinfo=UTC)))["kept"] == 0  # reviewed once
    # nothing bought in 2027: 45 days before the review of 31 January 2028, one warning each
    assert (await run(datetime(2027, 12, 15, tzinfo=UTC)))["warned"] == 0
    assert (await run(datetime(2027, 12, 20, tzinfo=UTC)))["warned"] == 2
    assert (await run(datetime(2027, 12, 21, tzinfo=UTC)))["warned"] == 0
    warnings = await loyalty.events(TierDowngradeWarning)
    assert sorted(w["member_id"] for w in warnings) == sorted([m1["id"], m2["id"]])
    assert all(w["expected_tier"] is None and w["missing_qualifying"] == 15_000 for w in warnings)
    assert {w["review_at"] for w in warnings} == {"2028-01-31T00:00:00Z"}

    # past the period end, within the grace period: still silver; one of them buys again in time
    assert (await run(datetime(2028, 1, 5, tzinfo=UTC)))["downgraded"] == 0
    await loyalty.buy(returning, big, now=datetime(2028, 1, 10, tzinfo=UTC))
    status = (
        await loyalty.client.get(
            f"/programs/club/members/{m1['id']}/tier", params={"at": "2028-01-30T00:00:00Z"}
        )
    ).json()
    assert status["tier"] == "silver"
    assert status["will_downgrade"] is True
    assert status["review_at"] == "2028-01-31T00:00:00Z"
    assert (await run(datetime(2028, 1, 30, 23, tzinfo=UTC)))["downgraded"] == 0
    outcome = await run(datetime(2028, 1, 31, 0, 0, 1, tzinfo=UTC))
    assert (outcome["downgraded"], outcome["kept"]) == (1, 1)
    assert (await loyalty.member(m1["id"])).tier is None
    assert (await loyalty.member(m2["id"])).tier == "silver"
    changes = await loyalty.events(TierChanged)
    assert [(c["member_id"], c["to_tier"], c["direction"]) for c in changes] == [
        (m1["id"], "silver", "upgrade"),
        (m2["id"], "silver", "upgrade"),
        (m1["id"], None, "downgrade"),
    ]
    assert (await run(datetime(2028, 2, 1, tzinfo=UTC)))["downgraded"] == 0


async def test_spend_measure_nets_out_refunds(loyalty: Loyalty) -> None:
    await loyalty.program("club")
    await loyalty.tiers(
        "club",
        [
            {
                "name": "silver",
                "threshold": 20_000,
                "measure": "spend_minor",
                "window": {"kind": "rolling_days", "days": 30},
            }
        ],
    )
    customer = str(uuid.uuid4())
    member = await loyalty.enrol("club", customer)
    now = datetime.now(UTC) - timedelta(minutes=1)  # the clawback is stamped with the real clock
    first = await loyalty.buy(customer, [{"sku": "X", "quantity": 1, "unit_price_minor": 15_000}], now=now)
    async with loyalty.runtime.uow() as uow:
        await service.claw_back_for_refund(
            uow,
            PurchaseRefunded(
                refund_id="r1",
                purchase_id=first.purchase_id,
                customer_id=customer,
                occurred_at=now,
                currency="EUR",
                amount_minor=10_000,
                purchase_total_minor=15_000,
                refunded_total_minor=10_000,
            ),
        )
        await uow.commit()
    after_refund = datetime.now(UTC)
    await loyalty.buy(customer, [{"sku": "X", "quantity": 1, "unit_price_minor": 10_000}], now=after_refund)
    # 150.00 - 100.00 refunded + 100.00 = 150.00: short of 200.00 (250.00 had refunds been ignored)
    assert (await loyalty.member(member["id"])).tier is None
    status = (await loyalty.client.get(f"/programs/club/members/{member['id']}/tier")).json()
    assert status["progress"][0]["value"] == 15_000
    assert status["next_tier"] == status["progress"][0]
    assert status["next_tier"]["missing"] == 5_000


# --- validation -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        (
            {"name": "x", "kind": "multiplier", "definition": {"factor": {"numerator": 3, "denominator": 0}}},
            "body.definition.factor.denominator",
            "must be > 0",
        ),
        (
            {
                "name": "x",
                "kind": "multiplier",
                "definition": {
                    "factor": {"numerator": 3, "denominator": 2},
                    "conditions": {"tiers": ["platinum"]},
                },
            },
            "body.definition.conditions.tiers.0",
            "unknown tier 'platinum'",
        ),
        ({"name": "x", "kind": "bogus", "definition": {}}, "body.kind", ""),
        (
            {"name": "x", "kind": "event_bonus", "definition": {"event": "wedding", "points": 1}},
            "body.definition.event",
            "",
        ),
        (
            {"name": "x", "kind": "bonus_points", "definition": {"points": 2.5}},
            "body.definition.points",
            "whole number",
        ),
        (
            {
                "name": "x",
                "kind": "bonus_points",
                "definition": {"points": 5},
                "valid_from": "2026-02-01T00:00:00Z",
                "valid_until": "2026-01-01T00:00:00Z",
            },
            "body.valid_until",
            "after valid_from",
        ),
        (
            {
                "name": "x",
                "kind": "bonus_points",
                "definition": {"points": 5},
                "valid_from": "2026-02-01T00:00:00",
            },
            "body.valid_from",
            "",
        ),
    ],
)
async def test_rule_validation_names_the_field(
    loyalty: Loyalty, body: dict[str, Any], field: str, message: str
) -> None:
    await loyalty.program("club")
    await loyalty.tiers("club", SILVER_GOLD)
    response = await loyalty.client.post("/programs/club/rules", json=body)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    errors = {e["field"]: e["message"] for e in response.json()["errors"]}
    assert field in errors, errors
    assert message in errors[field]
    assert (await loyalty.client.get("/programs/club/rules", params={"include_inactive": True})).json() == []


async def test_tier_validation_and_rule_references(loyalty: Loyalty) -> None:
    await loyalty.program("club")
    bad = [
        {"name": "silver", "threshold": 100, "window": {"kind": "calendar_year"}},
        {"name": "gold", "threshold": 50, "window": {"kind": "calendar_year"}},
    ]
    response = await loyalty.client.put("/programs/club/tiers", json={"tiers": bad})
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "body.tiers.1.threshold"
    response = await loyalty.client.put(
        "/programs/club/tiers",
        json={"tiers": [{"name": "silver", "threshold": 100, "window": {"kind": "rolling_days", "days": 0}}]},
    )
    assert response.json()["errors"][0]["field"] == "body.tiers.0.window.days"
    response = await loyalty.client.put("/programs/club/tiers", json={"tiers": [], "grace_days": -1})
    assert response.json()["errors"][0]["field"] == "body.grace_days"

    await loyalty.tiers("club", SILVER_GOLD, grace_days=14)
    program = (await loyalty.client.get("/programs/club")).json()
    assert program["version"] == 2
    assert [t["name"] for t in program["tiers"]] == ["silver", "gold"]
    await loyalty.rule(
        "club",
        name="Gold",
        kind="multiplier",
        definition={"factor": {"numerator": 2, "denominator": 1}, "conditions": {"tiers": ["gold"]}},
    )
    response = await loyalty.client.put("/programs/club/tiers", json={"tiers": SILVER_GOLD[:1]})
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "body.tiers"
    assert (await loyalty.client.get("/programs/other/rules")).status_code == 404


# --- PostgreSQL -------------------------------------------------------------------------------------


async def test_rules_and_tiers_on_postgres(pg_database: str, tmp_path: Path) -> None:
    async for loyalty in _harness(pg_database, tmp_path):
        await loyalty.program("club", timezone="America/New_York")
        await loyalty.tiers(
            "club",
            [
                {
                    "name": "silver",
                    "threshold": 100,
                    "window": {"kind": "rolling_days", "days": 30},
                    "benefits": {"earn_multiplier": {"numerator": 2, "denominator": 1}},
                }
            ],
            grace_days=2,
            warning_days=5,
        )
        await loyalty.rule("club", name="Cap", kind="cap", definition={"max_points": 500, "period": "month"})
        await loyalty.rule(
            "club", name="Referee", kind="event_bonus", definition={"event": "referral_referee", "points": 40}
        )
        await loyalty.rule(
            "club",
            name="Referrer",
            kind="event_bonus",
            definition={"event": "referral_referrer", "points": 60},
        )
        customer = str(uuid.uuid4())
        member = await loyalty.enrol("club", customer)
        friend = str(uuid.uuid4())
        friend_member = await loyalty.enrol("club", friend, referral_code=member["referral_code"])

        await loyalty.buy(customer, [{"sku": "X", "quantity": 1, "unit_price_minor": 12_000}], now=T0)
        assert (await loyalty.member(member["id"])).tier == "silver"
        body = {
            "member_id": member["id"],
            "purchase": {
                "currency": "EUR",
                "total_minor": 30_000,
                "occurred_at": (T0 + timedelta(hours=1)).isoformat(),
                "lines": [{"sku": "X", "quantity": 1, "unit_price_minor": 30_000}],
            },
        }
        dry = (await loyalty.client.post("/programs/club/dry-run", json=body)).json()
        # 300 × 2 = 600, but the monthly cap (500, bonuses included) leaves 500 - 120 = 380
        assert dry["points"] == 380
        assert [r["name"] for r in dry["rules"]] == ["Base rate", "Tier silver", "Cap"]
        bought = await loyalty.buy(
            customer, [{"sku": "X", "quantity": 1, "unit_price_minor": 30_000}], now=T0 + timedelta(hours=1)
        )
        [tx] = [
            t
            for t in await loyalty.transactions("club", member["id"], "earn")
            if t.details["purchase_id"] == bought.purchase_id
        ]
        assert tx.details["points"] == 380
        assert tx.details["rules"] == dry["rules"]

        await loyalty.buy(friend, [SOCKS], now=T0 + timedelta(hours=2))
        await loyalty.buy(friend, [SOCKS], now=T0 + timedelta(hours=3))
        assert len(await loyalty.events(ReferralCompleted)) == 1
        # the referee gets their bonus; the referrer's counts against their monthly cap, used up (500)
        assert [
            t.details["points"] for t in await loyalty.transactions("club", friend_member["id"], "bonus")
        ] == [40]
        assert await loyalty.transactions("club", member["id"], "bonus") == []

        # rolling 30 days from tier_since (T0). The first period [T0, T0+30d] holds the purchases that
        # made them silver: kept at its review (T0+32d). Nothing bought since: the second period ends at
        # T0+60d, reviewed at T0+62d, warned from T0+57d.
        uow = loyalty.runtime.uow
        assert (await jobs.run_once(uow, now=T0 + timedelta(days=31, hours=23)))["kept"] == 0
        assert (await jobs.run_once(uow, now=T0 + timedelta(days=32, minutes=1)))["kept"] == 1
        assert (await jobs.run_once(uow, now=T0 + timedelta(days=56)))["warned"] == 0
        assert (await jobs.run_once(uow, now=T0 + timedelta(days=58)))["warned"] == 1
        assert (await jobs.run_once(uow, now=T0 + timedelta(days=59)))["warned"] == 0
        assert (await jobs.run_once(uow, now=T0 + timedelta(days=61, hours=23)))["downgraded"] == 0
        assert (await jobs.run_once(uow, now=T0 + timedelta(days=62, minutes=1)))["downgraded"] == 1
        assert (await loyalty.member(member["id"])).tier is None
        assert [c["direction"] for c in await loyalty.events(TierChanged)] == ["upgrade", "downgrade"]
        [warning] = await loyalty.events(TierDowngradeWarning)
        assert warning["missing_qualifying"] == 100
        assert warning["expected_tier"] is None
        check = (await loyalty.client.get("/ledger/check")).json()
        assert check["ok"] is True, check
