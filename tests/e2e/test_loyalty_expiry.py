"""Loyalty's scheduled passes with time under control (`now` injected): points expire at the right
instant in the program's time zone, oldest-expiring lots are spent first so later lots survive,
pending points are released when their hold ends, the inactivity policy expires everything of an
inactive member, and an expiring-soon reminder is sent once.

The instants are worked out by hand (UTC):
- Pacific/Auckland (NZDT, UTC+13 until 5 Apr 2026): 23:30 on 31 Jan is 10:30Z on 31 Jan; the month
  ends at 11:00Z on 31 Jan; 1 Mar 00:00 is 11:00Z on 28 Feb; 1 Apr 00:00 is 11:00Z on 31 Mar.
- America/New_York (EST, UTC−5; EDT, UTC−4 from 8 Mar 2026): 23:30 on 31 Jan is 04:30Z on 1 Feb;
  the month ends at 05:00Z on 1 Feb; 1 Mar 00:00 is 05:00Z; 1 Apr 00:00 (EDT) is 04:00Z.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from services.loyalty import jobs, ledger
from shared.contracts.loyalty import PointsExpired, PointsExpiringSoon
from shared.runtime import ServiceRuntime
from tests.support.loyalty import (
    balances,
    books_ok,
    database,
    derived,
    earn,
    enrol,
    events,
    loyalty_runtime,
    make_program,
    spend,
)

SECOND = timedelta(seconds=1)
ENROLLED = datetime(2026, 1, 1, tzinfo=UTC)

ZONES = {
    # zone: (31 Jan 23:30 local, 1 Feb 00:30 local, end of Jan, end of Feb, end of Mar), all UTC
    "Pacific/Auckland": (
        datetime(2026, 1, 31, 10, 30, tzinfo=UTC),
        datetime(2026, 1, 31, 11, 30, tzinfo=UTC),
        datetime(2026, 1, 31, 11, 0, tzinfo=UTC),
        datetime(2026, 2, 28, 11, 0, tzinfo=UTC),
        datetime(2026, 3, 31, 11, 0, tzinfo=UTC),
    ),
    "America/New_York": (
        datetime(2026, 2, 1, 4, 30, tzinfo=UTC),
        datetime(2026, 2, 1, 5, 30, tzinfo=UTC),
        datetime(2026, 2, 1, 5, 0, tzinfo=UTC),
        datetime(2026, 3, 1, 5, 0, tzinfo=UTC),
        datetime(2026, 4, 1, 4, 0, tzinfo=UTC),
    ),
}


@pytest.fixture(params=["sqlite"])
async def runtime(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ServiceRuntime]:
    async with database(tmp_path, request.param) as url, loyalty_runtime(url) as rt:
        yield rt


BOTH = pytest.mark.parametrize("runtime", ["sqlite", "postgresql"], indirect=True)


async def _expire(runtime: ServiceRuntime, now: datetime) -> jobs.PassResult:
    return await jobs.expiry_pass(runtime.uow, now=now)


@BOTH
@pytest.mark.parametrize("zone", sorted(ZONES))
async def test_points_earned_late_on_the_last_day_expire_at_local_midnight(
    runtime: ServiceRuntime, zone: str
) -> None:
    late, _, month_end, _, _ = ZONES[zone]
    await make_program(runtime, timezone=zone, expiry_policy="end_of_month", expiry_period=0)
    member = await enrol(runtime, "club", "c-1", now=ENROLLED)
    posted = await earn(runtime, member.id, 100, now=late, reference="buy:1")
    assert posted.lots[0].expires_at == month_end  # 30 minutes after earning, local midnight

    assert (await _expire(runtime, month_end - SECOND)).points == 0
    assert (await balances(runtime, member.id))["available"] == 100
    done = await _expire(runtime, month_end)
    assert (done.members, done.lots, done.points) == (1, 1, 100)
    assert (await balances(runtime, member.id))["available"] == 0
    assert await derived(runtime, ledger.program_account("club", "expired")) == 100
    [event] = await events(runtime, PointsExpired.full_type())
    assert (event["customer_id"], event["points"], event["balance_after"]) == ("c-1", 100, 0)
    assert datetime.fromisoformat(event["occurred_at"]) == month_end
    assert (await _expire(runtime, month_end + timedelta(days=1))).points == 0  # nothing twice
    assert (await books_ok(runtime)).ok


@pytest.mark.parametrize("zone", sorted(ZONES))
async def test_spending_takes_the_soonest_expiring_lot_so_the_later_one_survives(
    runtime: ServiceRuntime, zone: str
) -> None:
    late_jan, early_feb, _, end_feb, end_mar = ZONES[zone]
    await make_program(runtime, timezone=zone, expiry_policy="end_of_month", expiry_period=1)
    member = await enrol(runtime, "club", "c-1", now=ENROLLED)
    first = await earn(runtime, member.id, 100, now=late_jan, reference="buy:jan")
    second = await earn(runtime, member.id, 100, now=early_feb, reference="buy:feb")
    # One hour apart, but on either side of a local month boundary: different expiry dates.
    assert first.lots[0].expires_at == end_feb
    assert second.lots[0].expires_at == end_mar

    await spend(runtime, member.id, 60, now=early_feb + timedelta(days=3), reference="spend:1")
    assert (await _expire(runtime, end_feb - SECOND)).points == 0
    done = await _expire(runtime, end_feb)
    assert done.points == 40  # what the spend left of January's lot
    assert await balances(runtime, member.id) == {
        "available": 100,
        "pending": 0,
        "reserved": 0,
        "qualifying": 0,
    }
    assert (await _expire(runtime, end_mar - SECOND)).points == 0  # February's lot is untouched
    assert (await _expire(runtime, end_mar)).points == 100
    assert (await balances(runtime, member.id))["available"] == 0
    expired = await events(runtime, PointsExpired.full_type())
    assert [(e["points"], e["balance_after"]) for e in expired] == [(40, 100), (100, 0)]
    assert (await books_ok(runtime)).ok


async def test_every_dated_policy_expires_on_its_date(runtime: ServiceRuntime) -> None:
    await make_program(runtime, id="days", expiry_policy="after_days", expiry_period=30)
    await make_program(
        runtime, id="year", timezone="America/New_York", expiry_policy="end_of_year", expiry_period=0
    )
    a = await enrol(runtime, "days", "c-1", now=ENROLLED)
    b = await enrol(runtime, "year", "c-1", now=ENROLLED)
    earned = datetime(2026, 12, 31, 23, 30, tzinfo=UTC)  # 18:30 in New York: still 2026 there
    await earn(runtime, a.id, 10, now=earned, reference="a")
    await earn(runtime, b.id, 20, now=earned, reference="b")
    new_year_ny = datetime(2027, 1, 1, 5, 0, tzinfo=UTC)
    assert (await _expire(runtime, new_year_ny - SECOND)).points == 0
    assert (await _expire(runtime, new_year_ny)).points == 20
    assert (await _expire(runtime, earned + timedelta(days=30) - SECOND)).points == 0
    assert (await _expire(runtime, earned + timedelta(days=30))).points == 10
    assert (await books_ok(runtime)).ok


@BOTH
async def test_pending_points_are_released_when_the_hold_ends(runtime: ServiceRuntime) -> None:
    await make_program(runtime, pending_days=14, expiry_policy="after_days", expiry_period=365)
    member = await enrol(runtime, "club", "c-1", now=ENROLLED)
    other = await enrol(runtime, "club", "c-2", now=ENROLLED)
    t0 = datetime(2026, 3, 10, 12, tzinfo=UTC)
    await earn(runtime, member.id, 100, now=t0, reference="buy:1")
    await earn(runtime, member.id, 50, now=t0 + timedelta(days=2), reference="buy:2")
    await earn(runtime, other.id, 70, now=t0, reference="buy:3")
    assert await balances(runtime, member.id) == {
        "available": 0,
        "pending": 150,
        "reserved": 0,
        "qualifying": 0,
    }

    assert (await jobs.release_pass(runtime.uow, now=t0 + timedelta(days=14) - SECOND)).lots == 0
    done = await jobs.release_pass(runtime.uow, now=t0 + timedelta(days=14))
    assert (done.members, done.lots, done.points) == (2, 2, 170)
    assert (await balances(runtime, member.id))["available"] == 100
    assert (await balances(runtime, member.id))["pending"] == 50
    assert (await jobs.release_pass(runtime.uow, now=t0 + timedelta(days=14))).lots == 0  # once
    done = await jobs.release_pass(runtime.uow, now=t0 + timedelta(days=20))
    assert (done.lots, done.points) == (1, 50)
    assert await balances(runtime, member.id) == {
        "available": 150,
        "pending": 0,
        "reserved": 0,
        "qualifying": 0,
    }
    assert (await books_ok(runtime)).ok


async def test_a_bounded_pass_leaves_the_rest_to_the_next(runtime: ServiceRuntime) -> None:
    await make_program(runtime, pending_days=1)
    members = [await enrol(runtime, "club", f"c-{i}", now=ENROLLED) for i in range(5)]
    t0 = datetime(2026, 3, 1, tzinfo=UTC)
    for i, member in enumerate(members):
        await earn(runtime, member.id, 10 + i, now=t0, reference=f"buy:{i}")
    first = await jobs.release_pass(runtime.uow, now=t0 + timedelta(days=2), limit=3)
    assert (first.lots, first.full) == (3, True)
    results = await jobs.run_passes(runtime.uow, now=t0 + timedelta(days=2), limit=3, notices=False)
    assert sum(r.lots for r in results if r.name == "release") == 2
    assert [(await balances(runtime, m.id))["available"] for m in members] == [10, 11, 12, 13, 14]


async def test_inactivity_expires_everything_of_an_inactive_member(runtime: ServiceRuntime) -> None:
    await make_program(runtime, expiry_policy="inactivity", expiry_period=90)
    sleepy = await enrol(runtime, "club", "c-1", now=ENROLLED)
    busy = await enrol(runtime, "club", "c-2", now=ENROLLED)
    t0 = datetime(2026, 2, 1, tzinfo=UTC)
    await earn(runtime, sleepy.id, 100, now=t0, reference="s1")
    await earn(runtime, sleepy.id, 50, now=t0 + timedelta(days=10), reference="s2")  # last activity
    await earn(runtime, busy.id, 80, now=t0, reference="b1")
    await spend(runtime, busy.id, 30, now=t0 + timedelta(days=60), reference="b2")
    deadline = t0 + timedelta(days=10 + 90)
    assert (await _expire(runtime, deadline - SECOND)).points == 0
    done = await _expire(runtime, deadline)
    assert (done.members, done.lots, done.points) == (1, 2, 150)
    assert (await balances(runtime, sleepy.id))["available"] == 0
    assert (await balances(runtime, busy.id))["available"] == 50  # active 60 days in: not yet
    assert (await _expire(runtime, t0 + timedelta(days=150))).points == 50
    assert (await books_ok(runtime)).ok


async def test_expiring_soon_is_announced_once_per_member_and_date(runtime: ServiceRuntime) -> None:
    await make_program(
        runtime,
        timezone="Europe/Paris",
        expiry_policy="end_of_month",
        expiry_period=0,
        expiring_notice_days=10,
    )
    one = await enrol(runtime, "club", "c-1", now=ENROLLED)
    two = await enrol(runtime, "club", "c-2", now=ENROLLED)
    await earn(runtime, one.id, 100, now=datetime(2026, 1, 5, tzinfo=UTC), reference="a")
    await earn(runtime, one.id, 20, now=datetime(2026, 1, 9, tzinfo=UTC), reference="b")  # same date
    await earn(runtime, two.id, 40, now=datetime(2026, 1, 7, tzinfo=UTC), reference="c")
    await spend(runtime, two.id, 40, now=datetime(2026, 1, 8, tzinfo=UTC), reference="d")  # nothing left
    end_of_january = datetime(2026, 1, 31, 23, 0, tzinfo=UTC)  # 1 Feb 00:00 in Paris

    early = await jobs.notice_pass(runtime.uow, now=end_of_january - timedelta(days=10, seconds=1))
    assert early.lots == 0
    sent = await jobs.notice_pass(runtime.uow, now=end_of_january - timedelta(days=10))
    assert (sent.members, sent.lots, sent.points) == (1, 1, 120)
    again = await jobs.notice_pass(runtime.uow, now=end_of_january - timedelta(days=2))
    assert again.lots == 0
    [notice] = await events(runtime, PointsExpiringSoon.full_type())
    assert notice["customer_id"] == "c-1"
    assert notice["points"] == 120
    assert datetime.fromisoformat(notice["expires_at"]) == end_of_january


async def test_inactivity_reminder_names_the_day_the_points_would_go(runtime: ServiceRuntime) -> None:
    await make_program(runtime, expiry_policy="inactivity", expiry_period=90, expiring_notice_days=14)
    member = await enrol(runtime, "club", "c-1", now=ENROLLED)
    t0 = datetime(2026, 2, 1, tzinfo=UTC)
    await earn(runtime, member.id, 75, now=t0, reference="a")
    assert (await jobs.notice_pass(runtime.uow, now=t0 + timedelta(days=75) - SECOND)).lots == 0
    assert (await jobs.notice_pass(runtime.uow, now=t0 + timedelta(days=76))).points == 75
    assert (await jobs.notice_pass(runtime.uow, now=t0 + timedelta(days=80))).lots == 0
    [notice] = await events(runtime, PointsExpiringSoon.full_type())
    assert datetime.fromisoformat(notice["expires_at"]) == t0 + timedelta(days=90)


@BOTH
async def test_passes_racing_each_other_expire_once(runtime: ServiceRuntime) -> None:
    await make_program(runtime, expiry_policy="after_days", expiry_period=10)
    members = [await enrol(runtime, "club", f"c-{i}", now=ENROLLED) for i in range(4)]
    t0 = datetime(2026, 5, 1, tzinfo=UTC)
    for i, member in enumerate(members):
        await earn(runtime, member.id, 25, now=t0, reference=f"buy:{i}")
    results: list[Any] = await asyncio.gather(*(_expire(runtime, t0 + timedelta(days=11)) for _ in range(3)))
    assert sum(r.points for r in results) == 100
    assert not any(r.failed for r in results)
    assert await derived(runtime, ledger.program_account("club", "expired")) == 100
    assert len(await events(runtime, PointsExpired.full_type())) == 4
    assert (await books_ok(runtime)).ok
