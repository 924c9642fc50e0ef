"""Rewards end to end over HTTP (the loyalty service on SQLite): the staff catalogue, the member's
catalogue and quotes with everything shown up front, two-phase redemptions (reserve → confirm or
cancel/expire), refusals that name their rule and write nothing, Idempotency-Key replays, voucher
codes, the expiry job and partners (accrual and redemption) on their own ledger accounts."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import func, select, update

from services.loyalty import ledger
from services.loyalty import segments as loyalty_segments
from services.loyalty.app import build
from services.loyalty.models import MESSAGING, LedgerTransaction, Lot, Member
from services.loyalty.rewards import jobs
from services.loyalty.rewards.models import Redemption
from services.loyalty.settings import load_settings
from shared.contracts.segmentation import SegmentEntered
from shared.messaging.bus import InProcessBus
from shared.runtime import ServiceRuntime

PROGRAM = "club"
CODE = re.compile(r"^[A-HJ-NP-Z2-9]{4}-[A-HJ-NP-Z2-9]{4}-[A-HJ-NP-Z2-9]{4}$")


@pytest.fixture
async def runtime(tmp_path: Path) -> AsyncIterator[ServiceRuntime]:
    rt = build(load_settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'loyalty.db'}"), InProcessBus())
    await rt.start()
    await rt.relay.stop()  # events stay in the outbox, where the tests read them
    try:
        yield rt
    finally:
        await rt.stop()


@pytest.fixture
async def api(runtime: ServiceRuntime) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=runtime.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://loyalty") as client:
        response = await client.post(
            "/programs",
            json={
                "id": PROGRAM,
                "name": "Club",
                "timezone": "Europe/Paris",
                "settings": {"reservation_hold_minutes": 15},
            },
        )
        assert response.status_code == 201, response.text
        yield client


async def member(api: httpx.AsyncClient, points: int = 0) -> str:
    response = await api.post(f"/programs/{PROGRAM}/members", json={"customer_id": str(uuid.uuid4())})
    assert response.status_code == 201, response.text
    member_id = str(response.json()["id"])
    if points:
        await grant(api, member_id, points)
    return member_id


async def grant(api: httpx.AsyncClient, member_id: str, points: int) -> None:
    response = await api.post(
        f"/programs/{PROGRAM}/members/{member_id}/adjustments",
        json={"points": points, "reason": "test grant"},
    )
    assert response.status_code == 201, response.text


async def reward(api: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    body = {"kind": "voucher", "name": "10 EUR voucher", "cost_points": 100, **fields}
    response = await api.post(f"/programs/{PROGRAM}/rewards", json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


async def redeem(
    api: httpx.AsyncClient, member_id: str, reward_id: str, key: str | None = None, **extra: Any
) -> httpx.Response:
    headers = {"Idempotency-Key": key} if key else {}
    return await api.post(
        f"/programs/{PROGRAM}/members/{member_id}/redemptions",
        json={"reward_id": reward_id, **extra},
        headers=headers,
    )


async def balances(api: httpx.AsyncClient, member_id: str) -> dict[str, int]:
    response = await api.get(f"/programs/{PROGRAM}/members/{member_id}")
    assert response.status_code == 200, response.text
    return dict(response.json()["balances"])


async def books_ok(runtime: ServiceRuntime) -> None:
    async with runtime.sessions() as session:
        report = await ledger.check(session)
    assert report.ok, report


async def counts(runtime: ServiceRuntime) -> tuple[int, int, int]:
    """Ledger transactions, redemptions, outbox rows: what a refused request must not change."""
    async with runtime.sessions() as session:
        transactions = await session.scalar(select(func.count()).select_from(LedgerTransaction))
        redemptions = await session.scalar(select(func.count()).select_from(Redemption))
        outbox = await session.scalar(select(func.count()).select_from(MESSAGING.outbox))
    return int(transactions or 0), int(redemptions or 0), int(outbox or 0)


async def outbox_types(runtime: ServiceRuntime) -> list[str]:
    async with runtime.sessions() as session:
        return list(await session.scalars(select(MESSAGING.outbox.c.type).order_by(MESSAGING.outbox.c.id)))


def refused(response: httpx.Response, status: int, rule: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert response.headers["content-type"].startswith("application/problem+json")
    assert body.get("rule") == rule, body


# --- catalogue ----------------------------------------------------------------------------------------


async def test_staff_catalogue_crud_and_openapi(api: httpx.AsyncClient) -> None:
    created = await reward(
        api,
        name="Weekend for two",
        kind="experience",
        cost_points=5000,
        cash_minor=2500,
        currency="EUR",
        fees_minor=300,
        terms="Booking subject to availability.",
        stock=3,
        per_member_limit=1,
        limit_period="year",
        blackout_dates=[{"from": "2030-12-24", "until": "2030-12-26"}],
    )
    assert created["available"] == 3
    assert created["reserved"] == 0
    assert created["version"] == 1
    assert created["blackout_dates"] == [{"from": "2030-12-24", "until": "2030-12-26"}]
    one = await api.get(f"/programs/{PROGRAM}/rewards/{created['id']}")
    assert one.status_code == 200
    assert one.json()["name"] == "Weekend for two"
    listed = await api.get(f"/programs/{PROGRAM}/rewards")
    assert [r["id"] for r in listed.json()] == [created["id"]]

    body = {**{k: created[k] for k in ("kind", "name", "cost_points", "currency")}, "stock": 10}
    stale = await api.put(
        f"/programs/{PROGRAM}/rewards/{created['id']}", json=body, headers={"If-Match": '"7"'}
    )
    assert stale.status_code == 412
    changed = await api.put(
        f"/programs/{PROGRAM}/rewards/{created['id']}", json=body, headers={"If-Match": '"1"'}
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["stock"] == 10
    assert changed.json()["version"] == 2
    assert changed.json()["cash_minor"] == 0  # PUT replaces the whole definition

    assert (await api.get(f"/programs/{PROGRAM}/rewards/nope")).status_code == 404
    # Money without a currency, a partner reward without its partner, fractional or negative points.
    for bad in (
        {"cash_minor": 100},
        {"kind": "partner"},
        {"cost_points": 10.5},
        {"cost_points": -5},
        {"cost_points": 0},
        {"blackout_dates": [{"from": "2030-01-05", "until": "2030-01-01"}]},
    ):
        response = await api.post(
            f"/programs/{PROGRAM}/rewards", json={"kind": "voucher", "name": "x", "cost_points": 1, **bad}
        )
        assert response.status_code == 422, (bad, response.text)

    spec = (await api.get("/openapi.json")).json()
    for path, method in [
        ("/programs/{program_id}/rewards", "post"),
        ("/programs/{program_id}/rewards", "get"),
        ("/programs/{program_id}/rewards/{reward_id}", "put"),
        ("/programs/{program_id}/rewards/{reward_id}", "get"),
        ("/programs/{program_id}/rewards/{reward_id}/quote", "get"),
        ("/programs/{program_id}/members/{member_id}/catalogue", "get"),
        ("/programs/{program_id}/members/{member_id}/redemptions", "post"),
        ("/programs/{program_id}/members/{member_id}/redemptions", "get"),
        ("/redemptions/{redemption_id}", "get"),
        ("/redemptions/{redemption_id}/confirm", "post"),
        ("/redemptions/{redemption_id}/cancel", "post"),
        ("/programs/{program_id}/partners", "post"),
        ("/programs/{program_id}/partners", "get"),
        ("/programs/{program_id}/partners/{partner_id}/accruals", "post"),
    ]:
        operation = spec["paths"][path][method]
        assert operation["summary"], (path, method)
        if method == "post" or method == "put":
            assert operation["description"], (path, method)
            assert "Problem" in str(operation["responses"]), (path, method)


async def test_member_catalogue_and_quote_show_everything_up_front(api: httpx.AsyncClient) -> None:
    member_id = await member(api, 1000)
    cheap = await reward(api, name="Coffee", kind="free_product", cost_points=200)
    dear = await reward(
        api, name="Flight upgrade", kind="upgrade", cost_points=800, cash_minor=1500, currency="EUR",
        fees_minor=450, terms="Taxes included in the fees.", per_member_limit=2, limit_period="month",
    )  # fmt: skip
    gold = await reward(api, name="Lounge", kind="experience", cost_points=100, eligible_tiers=["gold"])
    pricey = await reward(api, name="TV", kind="free_product", cost_points=5000, stock=2)
    await reward(api, name="Draft", status="draft")

    response = await api.get(f"/programs/{PROGRAM}/members/{member_id}/catalogue")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["available_points"] == 1000
    items = {i["reward"]["id"]: i for i in body["items"]}
    assert set(items) == {cheap["id"], dear["id"], gold["id"], pricey["id"]}  # drafts are not shown
    assert items[cheap["id"]]["redeemable"] is True
    assert items[cheap["id"]]["reasons"] == []
    assert items[dear["id"]]["redeemable"] is True
    assert items[dear["id"]]["total_cash_minor"] == 1950
    assert "at most 2 per member per month" in items[dear["id"]]["restrictions"]
    assert [r["rule"] for r in items[gold["id"]]["reasons"]] == ["reward.tier"]
    assert [r["rule"] for r in items[pricey["id"]]["reasons"]] == ["balance.insufficient"]
    assert "2 left" in items[pricey["id"]]["restrictions"]

    quote = await api.get(f"/programs/{PROGRAM}/rewards/{dear['id']}/quote", params={"member_id": member_id})
    assert quote.status_code == 200, quote.text
    q = quote.json()
    assert (q["points"], q["cash_minor"], q["fees_minor"], q["total_cash_minor"]) == (800, 1500, 450, 1950)
    assert q["currency"] == "EUR"
    assert q["terms"] == "Taxes included in the fees."
    assert q["balance_after"] == 200
    assert q["hold_minutes"] == 15
    assert q["redeemable"] is True


# --- two-phase redemption -----------------------------------------------------------------------------


async def test_reserve_confirm_issues_a_voucher_and_announces_it(
    api: httpx.AsyncClient, runtime: ServiceRuntime
) -> None:
    member_id = await member(api, 500)
    voucher = await reward(api, cost_points=300, stock=4)
    before = datetime.now(UTC)
    reserved = await redeem(api, member_id, voucher["id"])
    assert reserved.status_code == 201, reserved.text
    r = reserved.json()
    assert r["status"] == "reserved"
    assert r["voucher_code"] is None
    assert r["points"] == 300
    expires = datetime.fromisoformat(r["expires_at"])
    assert timedelta(minutes=14) < expires - before <= timedelta(minutes=15, seconds=5)
    assert await balances(api, member_id) == {
        "available": 200,
        "pending": 0,
        "reserved": 300,
        "qualifying": 0,
    }
    held = (await api.get(f"/programs/{PROGRAM}/rewards/{voucher['id']}")).json()
    assert (held["stock"], held["reserved"], held["available"]) == (4, 1, 3)
    assert not [t for t in await outbox_types(runtime) if "redeemed" in t]  # nothing redeemed yet

    confirmed = await api.post(f"/redemptions/{r['id']}/confirm")
    assert confirmed.status_code == 200, confirmed.text
    c = confirmed.json()
    assert c["status"] == "confirmed", c
    assert CODE.match(c["voucher_code"]), c
    assert c["confirm_transaction_id"]
    assert c["confirmed_at"]
    assert await balances(api, member_id) == {"available": 200, "pending": 0, "reserved": 0, "qualifying": 0}
    after = (await api.get(f"/programs/{PROGRAM}/rewards/{voucher['id']}")).json()
    assert (after["stock"], after["reserved"], after["available"]) == (3, 0, 3)
    types = await outbox_types(runtime)
    assert any("points_redeemed" in t for t in types)
    assert any("reward_redeemed" in t for t in types)
    async with runtime.sessions() as session:
        envelopes = list(
            await session.scalars(
                select(MESSAGING.outbox.c.envelope).where(MESSAGING.outbox.c.type.like("%reward_redeemed%"))
            )
        )
        redeemed = await ledger.derived_balance(session, ledger.program_account(PROGRAM, "redeemed"))
    assert envelopes[0]["data"]["voucher_code"] == c["voucher_code"]
    assert envelopes[0]["data"]["redemption_id"] == r["id"]
    assert redeemed == 300

    # Settled: neither confirmed again nor cancelled; read back; listed.
    refused(await api.post(f"/redemptions/{r['id']}/confirm"), 409, "redemption.confirmed")
    refused(await api.post(f"/redemptions/{r['id']}/cancel"), 409, "redemption.confirmed")
    assert (await api.get(f"/redemptions/{r['id']}")).json()["voucher_code"] == c["voucher_code"]
    mine = await api.get(
        f"/programs/{PROGRAM}/members/{member_id}/redemptions", params={"status": "confirmed"}
    )
    assert [x["id"] for x in mine.json()] == [r["id"]]
    await books_ok(runtime)


async def test_cancel_gives_points_back_to_their_original_lots(
    api: httpx.AsyncClient, runtime: ServiceRuntime
) -> None:
    member_id = await member(api)
    await grant(api, member_id, 60)
    await grant(api, member_id, 80)
    async with runtime.sessions() as session:
        lots_before = {
            lot.id: lot.remaining
            for lot in await session.scalars(select(Lot).where(Lot.member_id == member_id))
        }
    voucher = await reward(api, cost_points=100, stock=1)
    r = (await redeem(api, member_id, voucher["id"])).json()
    async with runtime.sessions() as session:
        during = {
            lot.id: lot.remaining
            for lot in await session.scalars(select(Lot).where(Lot.member_id == member_id))
        }
    assert sum(during.values()) == 40
    assert during != lots_before
    assert (await api.get(f"/programs/{PROGRAM}/rewards/{voucher['id']}")).json()["available"] == 0

    cancelled = await api.post(f"/redemptions/{r['id']}/cancel", json={"reason": "changed my mind"})
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled"
    assert cancelled.json()["reason"] == "changed my mind"
    async with runtime.sessions() as session:
        lots_after = {
            lot.id: lot.remaining
            for lot in await session.scalars(select(Lot).where(Lot.member_id == member_id))
        }
    assert lots_after == lots_before  # the same lots, with the same expiry, hold the points again
    assert await balances(api, member_id) == {"available": 140, "pending": 0, "reserved": 0, "qualifying": 0}
    assert (await api.get(f"/programs/{PROGRAM}/rewards/{voucher['id']}")).json()["available"] == 1
    refused(await api.post(f"/redemptions/{r['id']}/confirm"), 409, "redemption.cancelled")
    await books_ok(runtime)


async def test_redeem_now_and_unique_voucher_codes(api: httpx.AsyncClient, runtime: ServiceRuntime) -> None:
    voucher = await reward(api, cost_points=10)
    upgrade = await reward(api, kind="upgrade", name="Room upgrade", cost_points=10)
    codes = []
    for _ in range(5):
        member_id = await member(api, 100)
        for _ in range(6):
            response = await redeem(api, member_id, voucher["id"], confirm=True)
            assert response.status_code == 201, response.text
            assert response.json()["status"] == "confirmed"
            codes.append(response.json()["voucher_code"])
        upgraded = await redeem(api, member_id, upgrade["id"], confirm=True)
        assert upgraded.json()["status"] == "confirmed"
        assert upgraded.json()["voucher_code"] is None
        assert (await balances(api, member_id))["available"] == 30
    assert len(codes) == 30
    assert len(set(codes)) == 30
    assert all(CODE.match(c) for c in codes)
    await books_ok(runtime)


async def test_points_and_money_needs_a_payment_reference(
    api: httpx.AsyncClient, runtime: ServiceRuntime
) -> None:
    member_id = await member(api, 100)
    combo = await reward(api, cost_points=50, cash_minor=999, currency="EUR", fees_minor=1)
    r = (await redeem(api, member_id, combo["id"])).json()
    refused(await api.post(f"/redemptions/{r['id']}/confirm"), 422, "redemption.payment_required")
    assert (await api.get(f"/redemptions/{r['id']}")).json()["status"] == "reserved"
    ok = await api.post(f"/redemptions/{r['id']}/confirm", json={"payment_reference": "pay_42"})
    assert ok.status_code == 200
    assert ok.json()["payment_reference"] == "pay_42"
    assert (ok.json()["cash_minor"], ok.json()["fees_minor"]) == (999, 1)
    await books_ok(runtime)


# --- refusals: named rule, nothing written ----------------------------------------------------------


async def test_refusals_name_their_rule_and_write_nothing(
    api: httpx.AsyncClient, runtime: ServiceRuntime
) -> None:
    member_id = await member(api, 1000)
    today = datetime.now(ZoneInfo("Europe/Paris")).date()
    cases: list[tuple[dict[str, Any], int, str]] = [
        (
            {
                "blackout_dates": [
                    {"from": (today - timedelta(days=1)).isoformat(), "until": today.isoformat()}
                ]
            },
            422,
            "reward.blackout",
        ),
        ({"available_from": (datetime.now(UTC) + timedelta(days=2)).isoformat()}, 422, "reward.window"),
        ({"available_until": (datetime.now(UTC) - timedelta(days=1)).isoformat()}, 422, "reward.window"),
        ({"eligible_tiers": ["gold", "platinum"]}, 422, "reward.tier"),
        ({"eligible_segments": ["vip"]}, 422, "reward.segment"),
        ({"stock": 0}, 409, "reward.out_of_stock"),
        ({"status": "retired"}, 422, "reward.inactive"),
    ]
    for fields, status, rule in cases:
        r = await reward(api, **fields)
        before = await counts(runtime)
        refused(await redeem(api, member_id, r["id"], key=str(uuid.uuid4())), status, rule)
        assert await counts(runtime) == before, rule

    too_dear = await reward(api, cost_points=1001)
    before = await counts(runtime)
    response = await redeem(api, member_id, too_dear["id"])
    assert response.status_code == 409
    assert response.json()["type"].endswith("/insufficient-points")
    assert response.json()["available"] == 1000
    assert response.json()["requested"] == 1001
    assert await counts(runtime) == before
    assert await balances(api, member_id) == {"available": 1000, "pending": 0, "reserved": 0, "qualifying": 0}

    # Per-member limit: one per member per month, counted over reservations and confirmations.
    limited = await reward(api, per_member_limit=1, limit_period="month")
    assert (await redeem(api, member_id, limited["id"])).status_code == 201
    before = await counts(runtime)
    refused(await redeem(api, member_id, limited["id"]), 422, "reward.member_limit")
    assert await counts(runtime) == before
    catalogue = (await api.get(f"/programs/{PROGRAM}/members/{member_id}/catalogue")).json()
    item = next(i for i in catalogue["items"] if i["reward"]["id"] == limited["id"])
    assert [r["rule"] for r in item["reasons"]] == ["reward.member_limit"]

    # Eligibility is met once the member has the tier / is in the segment.
    async with runtime.uow() as uow:
        await uow.session.execute(update(Member).where(Member.id == member_id).values(tier="gold"))
        customer_id = (await uow.session.get(Member, member_id)).customer_id  # type: ignore[union-attr]
        await loyalty_segments.apply(
            uow.session,
            SegmentEntered(
                segment_id="vip",
                segment_name="VIP",
                customer_id=customer_id,
                at=datetime.now(UTC),
                cause="event",
            ),
        )
        await uow.commit()
    for fields in ({"eligible_tiers": ["gold"]}, {"eligible_segments": ["vip", "other"]}):
        r = await reward(api, **fields)
        assert (await redeem(api, member_id, r["id"])).status_code == 201

    # A suspended member redeems nothing.
    await api.patch(f"/programs/{PROGRAM}/members/{member_id}", json={"status": "suspended"})
    refused(await redeem(api, member_id, too_dear["id"]), 422, "member.status")
    # Unknown reward, unknown member, malformed bodies.
    assert (await redeem(api, member_id, "nope")).status_code == 404
    assert (await redeem(api, "nope", too_dear["id"])).status_code == 404
    bad = await api.post(f"/programs/{PROGRAM}/members/{member_id}/redemptions", json={"reward": "x"})
    assert bad.status_code == 422
    await books_ok(runtime)


async def test_stock_is_never_oversold(api: httpx.AsyncClient, runtime: ServiceRuntime) -> None:
    scarce = await reward(api, cost_points=10, stock=2)
    members = [await member(api, 100) for _ in range(4)]
    outcomes = [(await redeem(api, m, scarce["id"])).status_code for m in members]
    assert outcomes == [201, 201, 409, 409]
    first = (await api.get(f"/programs/{PROGRAM}/members/{members[0]}/redemptions")).json()[0]
    await api.post(f"/redemptions/{first['id']}/cancel")  # a unit comes back ...
    assert (await redeem(api, members[2], scarce["id"], confirm=True)).status_code == 201  # ... and goes
    refused(await redeem(api, members[3], scarce["id"]), 409, "reward.out_of_stock")
    state = (await api.get(f"/programs/{PROGRAM}/rewards/{scarce['id']}")).json()
    assert (state["stock"], state["reserved"]) == (1, 1)
    # Stock cannot be set below what open reservations hold.
    body = {"kind": "voucher", "name": "10 EUR voucher", "cost_points": 10, "stock": 0}
    refused(await api.put(f"/programs/{PROGRAM}/rewards/{scarce['id']}", json=body), 422, "reward.stock")
    await books_ok(runtime)


# --- Idempotency-Key ----------------------------------------------------------------------------------


async def test_idempotency_key_replays_and_refuses_another_payload(
    api: httpx.AsyncClient, runtime: ServiceRuntime
) -> None:
    member_id = await member(api, 300)
    voucher = await reward(api, cost_points=100)
    other = await reward(api, cost_points=50, name="Other")
    key = str(uuid.uuid4())
    first = await redeem(api, member_id, voucher["id"], key=key)
    again = await redeem(api, member_id, voucher["id"], key=key)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert (await balances(api, member_id))["reserved"] == 100  # reserved once
    conflict = await redeem(api, member_id, other["id"], key=key)
    assert conflict.status_code == 409
    assert conflict.json()["idempotency_key"] == key

    rid = first.json()["id"]
    confirm_key = str(uuid.uuid4())
    c1 = await api.post(f"/redemptions/{rid}/confirm", headers={"Idempotency-Key": confirm_key})
    c2 = await api.post(f"/redemptions/{rid}/confirm", headers={"Idempotency-Key": confirm_key})
    assert c1.status_code == c2.status_code == 200
    assert c1.json() == c2.json()
    assert sum("reward_redeemed" in t for t in await outbox_types(runtime)) == 1
    c3 = await api.post(
        f"/redemptions/{rid}/confirm",
        json={"payment_reference": "x"},
        headers={"Idempotency-Key": confirm_key},
    )
    assert c3.status_code == 409

    # A refused request stores nothing under its key: the retry (once affordable) succeeds.
    dear = await reward(api, cost_points=1000, name="Dear")
    retry_key = str(uuid.uuid4())
    assert (await redeem(api, member_id, dear["id"], key=retry_key)).status_code == 409
    await grant(api, member_id, 1000)
    assert (await redeem(api, member_id, dear["id"], key=retry_key)).status_code == 201
    await books_ok(runtime)


# --- expiry -------------------------------------------------------------------------------------------


async def test_expired_reservations_are_refused_then_released_by_the_job(
    api: httpx.AsyncClient, runtime: ServiceRuntime
) -> None:
    member_id = await member(api, 250)
    voucher = await reward(api, cost_points=100, stock=5)
    stale = (await redeem(api, member_id, voucher["id"])).json()
    fresh = (await redeem(api, member_id, voucher["id"])).json()
    async with runtime.uow() as uow:  # the first reservation's hold ran out a minute ago
        await uow.session.execute(
            update(Redemption)
            .where(Redemption.id == stale["id"])
            .values(expires_at=datetime.now(UTC) - timedelta(minutes=1))
        )
        await uow.commit()

    before = await counts(runtime)
    response = await api.post(f"/redemptions/{stale['id']}/confirm")
    refused(response, 409, "redemption.expired")
    assert await counts(runtime) == before

    expired = await jobs.expire_reservations(runtime.uow)
    assert expired == [stale["id"]]
    assert await jobs.expire_reservations(runtime.uow) == []  # nothing left to do
    done = (await api.get(f"/redemptions/{stale['id']}")).json()
    assert done["status"] == "expired"
    assert done["reason"] == "expired"
    assert done["cancel_transaction_id"]
    assert await balances(api, member_id) == {
        "available": 150,
        "pending": 0,
        "reserved": 100,
        "qualifying": 0,
    }
    assert (await api.get(f"/programs/{PROGRAM}/rewards/{voucher['id']}")).json()["reserved"] == 1
    refused(await api.post(f"/redemptions/{stale['id']}/confirm"), 409, "redemption.expired")
    refused(await api.post(f"/redemptions/{stale['id']}/cancel"), 409, "redemption.expired")

    # Later, the job expires the other one too (its hold is 15 minutes).
    later = datetime.now(UTC) + timedelta(minutes=16)
    assert await jobs.expire_reservations(runtime.uow, later) == [fresh["id"]]
    assert await balances(api, member_id) == {"available": 250, "pending": 0, "reserved": 0, "qualifying": 0}
    state = (await api.get(f"/programs/{PROGRAM}/rewards/{voucher['id']}")).json()
    assert (state["stock"], state["reserved"]) == (5, 0)
    async with runtime.sessions() as session:
        kinds = list(
            await session.scalars(
                select(LedgerTransaction.reason).where(LedgerTransaction.kind == "release_reservation")
            )
        )
    assert kinds == ["expired", "expired"]
    await books_ok(runtime)


# --- partners -----------------------------------------------------------------------------------------


async def test_partners_earn_and_burn_on_their_own_accounts(
    api: httpx.AsyncClient, runtime: ServiceRuntime
) -> None:
    airline = await api.post(
        f"/programs/{PROGRAM}/partners", json={"id": "airline", "name": "Air", "kind": "accrual"}
    )
    assert airline.status_code == 201, airline.text
    hotel = await api.post(
        f"/programs/{PROGRAM}/partners", json={"id": "hotel", "name": "Hotel", "kind": "redemption"}
    )
    assert hotel.status_code == 201
    assert (
        await api.post(f"/programs/{PROGRAM}/partners", json={"id": "hotel", "name": "H", "kind": "both"})
    ).status_code == 409
    member_id = await member(api)

    accrual = {"member_id": member_id, "points": 750, "reference": "flight:AB123"}
    earned = await api.post(f"/programs/{PROGRAM}/partners/airline/accruals", json=accrual)
    assert earned.status_code == 201, earned.text
    assert {e["account_id"]: e["amount"] for e in earned.json()["entries"]} == {
        ledger.member_account(member_id): 750,
        ledger.partner_account("airline", "issued"): -750,
    }
    again = await api.post(f"/programs/{PROGRAM}/partners/airline/accruals", json=accrual)
    assert again.status_code == 200
    assert again.json()["id"] == earned.json()["id"]
    other = await api.post(f"/programs/{PROGRAM}/partners/airline/accruals", json={**accrual, "points": 751})
    assert other.status_code == 409
    for bad in (-5, 0, 7.5, "7"):
        response = await api.post(
            f"/programs/{PROGRAM}/partners/airline/accruals",
            json={**accrual, "reference": "f2", "points": bad},
        )
        assert response.status_code == 422, (bad, response.text)
    refused(
        await api.post(f"/programs/{PROGRAM}/partners/hotel/accruals", json={**accrual, "reference": "h"}),
        422,
        "partner.kind",
    )
    assert (await balances(api, member_id))["available"] == 750

    # A partner reward needs a redemption partner; confirmed, its points go to the partner.
    response = await api.post(
        f"/programs/{PROGRAM}/rewards",
        json={"kind": "partner", "name": "Hotel night", "cost_points": 500, "partner_id": "airline"},
    )
    refused(response, 422, "partner.kind")
    night = await reward(api, kind="partner", name="Hotel night", cost_points=500, partner_id="hotel")
    r = await redeem(api, member_id, night["id"], confirm=True)
    assert r.status_code == 201
    assert r.json()["partner_id"] == "hotel"
    assert CODE.match(r.json()["voucher_code"])
    async with runtime.sessions() as session:
        program_redeemed = await ledger.derived_balance(session, ledger.program_account(PROGRAM, "redeemed"))
    assert program_redeemed == 0
    partners = {p["id"]: p for p in (await api.get(f"/programs/{PROGRAM}/partners")).json()}
    assert (partners["airline"]["issued"], partners["airline"]["redeemed"]) == (750, 0)
    assert (partners["hotel"]["issued"], partners["hotel"]["redeemed"]) == (0, 500)
    assert (await api.get(f"/programs/{PROGRAM}/partners/hotel")).json()["redeemed"] == 500
    assert any("points_earned" in t for t in await outbox_types(runtime))
    await books_ok(runtime)
