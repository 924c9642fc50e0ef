"""Households over HTTP: created with an owner, members added (one household per member, at most
`max_members`) and removed, read with the pooled balance; pool transfers move points inside a
household free of the transfer limits, while ordinary transfers respect the program's limits
(minimum, per transfer, per calendar month) and write nothing when refused. Erasure scrubs a
member's personal data but keeps their ledger rows, and takes them out of their household."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select, update

from services.loyalty import privacy
from services.loyalty.models import LedgerTransaction, Member
from shared.runtime import ServiceRuntime
from tests.support.loyalty import (
    balances,
    books_ok,
    client,
    database,
    earn,
    enrol,
    loyalty_runtime,
    make_program,
    member_row,
)

NOW = datetime(2026, 6, 1, tzinfo=UTC)


@pytest.fixture(params=["sqlite"])
async def runtime(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ServiceRuntime]:
    async with database(tmp_path, request.param) as url, loyalty_runtime(url) as rt:
        yield rt


@pytest.fixture
async def http(runtime: ServiceRuntime) -> AsyncIterator[httpx.AsyncClient]:
    async with client(runtime) as c:
        yield c


async def _members(runtime: ServiceRuntime, count: int, points: int = 0) -> list[str]:
    ids = []
    for i in range(count):
        member = await enrol(runtime, "club", f"c-{i}", now=NOW)
        if points:
            await earn(runtime, member.id, points * (i + 1), now=NOW, reference=f"buy:{i}")
        ids.append(member.id)
    return ids


async def _transactions(runtime: ServiceRuntime, kind: str) -> int:
    async with runtime.uow() as uow:
        return int(
            await uow.session.scalar(
                select(func.count()).select_from(LedgerTransaction).where(LedgerTransaction.kind == kind)
            )
            or 0
        )


@pytest.mark.parametrize("runtime", ["sqlite", "postgresql"], indirect=True)
async def test_a_household_pools_its_members_points(runtime: ServiceRuntime, http: httpx.AsyncClient) -> None:
    await make_program(runtime)
    a, b, c, d = await _members(runtime, 4, points=100)  # 100, 200, 300, 400 points
    created = await http.post(
        "/programs/club/households", json={"name": "The Garcias", "owner_member_id": a, "max_members": 3}
    )
    assert created.status_code == 201, created.text
    household = created.json()
    hid = household["id"]
    assert [m["member_id"] for m in household["members"]] == [a]
    assert household["pooled_balance"] == 100

    assert (
        await http.post(f"/programs/club/households/{hid}/members", json={"member_id": b})
    ).status_code == 201
    again = await http.post(f"/programs/club/households/{hid}/members", json={"member_id": b})
    assert again.status_code == 200  # already in: nothing changes
    third = await http.post(f"/programs/club/households/{hid}/members", json={"member_id": c})
    assert third.json()["pooled_balance"] == 100 + 200 + 300
    full = await http.post(f"/programs/club/households/{hid}/members", json={"member_id": d})
    assert full.status_code == 422
    assert full.json()["rule"] == "household.full"

    # One household per member.
    other = await http.post("/programs/club/households", json={"name": "Other", "owner_member_id": d})
    taken = await http.post(f"/programs/club/households/{other.json()['id']}/members", json={"member_id": a})
    assert taken.status_code == 409

    read = (await http.get(f"/programs/club/households/{hid}")).json()
    assert read["pooled_balance"] == 600
    assert {m["member_id"]: m["available"] for m in read["members"]} == {a: 100, b: 200, c: 300}
    assert [m["owner"] for m in read["members"]] == [True, False, False]

    owner_leaves = await http.delete(f"/programs/club/households/{hid}/members/{a}")
    assert owner_leaves.status_code == 422
    assert owner_leaves.json()["rule"] == "household.owner"
    removed = await http.delete(f"/programs/club/households/{hid}/members/{c}")
    assert removed.status_code == 200
    assert removed.json()["pooled_balance"] == 300
    assert (await member_row(runtime, c)).household_id is None
    assert (await http.get("/programs/club/households/nope")).status_code == 404


async def test_pool_transfers_ignore_the_transfer_limits(
    runtime: ServiceRuntime, http: httpx.AsyncClient
) -> None:
    await make_program(
        runtime, settings={"transfer_limits": {"max_points_per_transfer": 50, "min_points": 10}}
    )
    a, b, c = await _members(runtime, 3, points=100)
    hid = (await http.post("/programs/club/households", json={"name": "H", "owner_member_id": a})).json()[
        "id"
    ]
    await http.post(f"/programs/club/households/{hid}/members", json={"member_id": b})

    moved = await http.post(
        f"/programs/club/households/{hid}/pool-transfers",
        json={"from_member_id": b, "to_member_id": a, "points": 150},
    )
    assert moved.status_code == 201, moved.text
    assert moved.json()["kind"] == "pool_transfer"
    assert (await balances(runtime, a))["available"] == 250
    assert (await balances(runtime, b))["available"] == 50
    pooled = (await http.get(f"/programs/club/households/{hid}")).json()["pooled_balance"]
    assert pooled == 300  # moving points inside the household leaves the pool as it was

    outsider = await http.post(
        f"/programs/club/households/{hid}/pool-transfers",
        json={"from_member_id": c, "to_member_id": a, "points": 10},
    )
    assert outsider.status_code == 422
    assert outsider.json()["rule"] == "household.member"
    too_much = await http.post(
        f"/programs/club/households/{hid}/pool-transfers",
        json={"from_member_id": b, "to_member_id": a, "points": 51},
    )
    assert too_much.status_code == 409

    no_pool = (
        await http.post(
            "/programs/club/households", json={"name": "P", "owner_member_id": c, "pooling_enabled": False}
        )
    ).json()["id"]
    refused = await http.post(
        f"/programs/club/households/{no_pool}/pool-transfers",
        json={"from_member_id": c, "to_member_id": c, "points": 10},
    )
    assert refused.json()["rule"] == "household.pooling"
    assert (await books_ok(runtime)).ok


async def test_ordinary_transfers_respect_the_program_limits(
    runtime: ServiceRuntime, http: httpx.AsyncClient
) -> None:
    limits = {"min_points": 10, "max_points_per_transfer": 300, "max_points_per_month": 500}
    await make_program(runtime, settings={"transfer_limits": limits})
    a, b = await _members(runtime, 2, points=1000)

    async def send(points: int) -> httpx.Response:
        return await http.post(
            f"/programs/club/members/{a}/transfers", json={"to_member_id": b, "points": points}
        )

    small = await send(5)
    assert (small.status_code, small.json()["rule"]) == (422, "transfer.min_points")
    big = await send(301)
    assert (big.status_code, big.json()["rule"]) == (422, "transfer.max_per_transfer")
    assert (await send(300)).status_code == 201
    assert (await send(200)).status_code == 201  # 500 this month: exactly the limit
    over = await send(10)
    assert over.status_code == 422
    assert over.json()["rule"] == "transfer.monthly_limit"
    assert over.json()["transferred_this_month"] == 500
    assert await _transactions(runtime, "transfer") == 2  # the refusals wrote nothing
    assert (await balances(runtime, a))["available"] == 1000 - 500
    assert (await balances(runtime, b))["available"] == 2000 + 500


async def test_the_month_is_the_program_s_calendar_month(runtime: ServiceRuntime) -> None:
    from services.loyalty import ledger, programs, transfers
    from services.loyalty.domain import LoyaltyRuleRefused

    limits = {"max_points_per_month": 100}
    await make_program(runtime, timezone="Pacific/Auckland", settings={"transfer_limits": limits})
    a, b = await _members(runtime, 2, points=500)
    # 31 May 11:30Z is 23:30 on 31 May in Auckland (NZST, UTC+12); 12:30Z is already 1 June there.
    async with runtime.uow() as uow:
        program = await programs.get_program(uow.session, "club")
        sender = await programs.get_member(uow.session, a)
        receiver = await programs.get_member(uow.session, b)
        may = datetime(2026, 5, 31, 11, 30, tzinfo=UTC)
        await transfers.check_limits(uow.session, program, sender, 100, now=may)
        await ledger.transfer(uow.session, program, sender, receiver, 100, reference="t1", now=may)
        with pytest.raises(LoyaltyRuleRefused):
            await transfers.check_limits(
                uow.session, program, sender, 1, now=datetime(2026, 5, 31, 11, 59, tzinfo=UTC)
            )
        await transfers.check_limits(
            uow.session, program, sender, 100, now=datetime(2026, 5, 31, 12, 30, tzinfo=UTC)
        )
        await uow.commit()


async def test_erasure_scrubs_the_member_and_keeps_the_books(
    runtime: ServiceRuntime, http: httpx.AsyncClient
) -> None:
    await make_program(runtime)
    a, b = await _members(runtime, 2, points=100)
    hid = (await http.post("/programs/club/households", json={"name": "H", "owner_member_id": a})).json()[
        "id"
    ]
    await http.post(f"/programs/club/households/{hid}/members", json={"member_id": b})
    has_birth_date = "birth_date" in Member.__table__.c  # added by the tiers/birthday migration
    if has_birth_date:
        async with runtime.uow() as uow:
            await uow.session.execute(
                update(Member).where(Member.id == a).values(birth_date=date(1990, 5, 17))
            )
            await uow.commit()
    before = await member_row(runtime, a)
    enrolled = await http.get(f"/cards/{before.card_number}")
    assert enrolled.status_code == 200

    for _ in range(2):  # idempotent
        async with runtime.uow() as uow:
            await privacy.erase_customer(uow.session, ["c-0"], erased_at=NOW)
            await uow.commit()
    after = await member_row(runtime, a)
    assert after.status == "erased"
    assert after.card_number != before.card_number
    assert after.referral_code != before.referral_code
    assert after.household_id is None
    if has_birth_date:
        assert getattr(after, "birth_date") is None  # noqa: B009
    assert (await http.get(f"/cards/{before.card_number}")).status_code == 404
    household = (await http.get(f"/programs/club/households/{hid}")).json()
    assert household["owner_member_id"] == b  # ownership passed on
    assert [m["member_id"] for m in household["members"]] == [b]
    assert (await balances(runtime, a))["available"] == 100  # the ledger is a financial record
    assert await _transactions(runtime, "earn") == 2
    assert (await books_ok(runtime)).ok
    untouched = await member_row(runtime, b)
    assert untouched.status == "active"
