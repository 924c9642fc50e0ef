"""Loyalty's reports over HTTP, their figures checked against numbers worked out by hand, and their
charts checked to be real PNG and SVG images.

The fixture (2026; program `club` in Europe/Paris: UTC+1, UTC+2 from 29 March; end-of-month expiry
two months ahead; program `other` never expires):
- customers registered (identity's events): c-1 2 Jan, c-2 3 Jan, c-3 15 Jan, c-8 1 Feb (merged
  into c-1 later), c-4 20 Feb, c-5 15 Mar, c-6 2 Apr, c-7 3 Apr (erased 5 Apr); c-9 never announced.
- club members: m1 (c-1) and m2 (c-2) enrolled 5 Jan, m3 (c-3) 20 Jan, m4 (c-4) 1 Mar, m9 (c-9) and
  m7 (c-7) in April — m7 is erased with c-7.
- club points: 10 Jan m1 +500, m2 +300 (expire 1 Apr 00:00 Paris = 31 Mar 22:00Z); 31 Jan 23:30Z
  (already 1 Feb in Paris) m3 +200 (expire 1 May Paris); 15 Feb m1 redeems 200; 20 Feb m2 −50 by a
  staff adjustment; 5 Mar m4 +100 held pending 30 days; 1 Apr 00:00Z expiry pass: m1 300 + m2 250
  = 550 expire; 10 Apr m2 +40 (expire 1 Jul Paris = 30 Jun 22:00Z), m3 reserves 50.
- other: m5 (c-1) +1000 on 10 Jan.

Expected, by hand:
- liability club: available m2 40 + m3 150 = 190, pending 100, reserved 50, outstanding 340; issued
  500+300+200+100+40 − 50 = 1090; redeemed 200; expired 550; 1090 = 340 + 200 + 550. Six members
  hold accounts (m7 keeps his: the ledger is a financial record). other: 1000 / 1000.
- expiring from 10 Apr 12:00Z: 30 days → m3's 150 (1 member); 60 → 150 (m4's are still pending);
  90 → 190 (m2's 40 expire 30 Jun), 2 members.
- issuance per Paris month: Jan issued 800; Feb issued 200 (m3's 23:30Z earning), clawed back 50,
  redeemed 200; Mar issued 100; Apr issued 40, expired 550.
- penetration: 6 customers (c-7 erased, c-8 merged away), 4 members among them (m9's customer
  unknown, m7 erased) → 66.67 %; month ends: Jan 3/3, Feb 3/4, Mar 4/5, Apr 4/6.
- active members at 15 Apr 00:00Z: over 30 days only m2 earned (a reservation is no redemption,
  an expiry no activity) → 1 of 5; over 90 days (from 15 Jan) m3, m4, m2 earned and m1 redeemed
  (m2's adjustment is staff's, not his) → 4 of 5.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.loyalty import jobs, known_customers, ledger, programs
from shared.contracts.identity import CustomerErased, CustomerMerged, CustomerRegistered
from shared.events.envelope import new_event
from shared.messaging.consumer import Delivery
from shared.runtime import ServiceRuntime
from tests.support.loyalty import client, database, earn, enrol, loyalty_runtime, make_program, spend

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _at(month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=UTC)


async def _deliver(runtime: ServiceRuntime, payload: Any) -> None:
    event = new_event(payload, source="/crm/identity")
    dead = await runtime.consumer.handle_batch([Delivery(event=event, topic=payload.topic.name)])
    assert dead == []


async def _fixture(runtime: ServiceRuntime) -> dict[str, str]:
    await make_program(runtime, timezone="Europe/Paris", expiry_policy="end_of_month", expiry_period=2)
    await make_program(runtime, id="other", name="Other")
    registered = {
        "c-1": _at(1, 2), "c-2": _at(1, 3), "c-3": _at(1, 15), "c-8": _at(2, 1), "c-4": _at(2, 20),
        "c-5": _at(3, 15), "c-6": _at(4, 2), "c-7": _at(4, 3),
    }  # fmt: skip
    for customer_id, at in registered.items():
        await _deliver(
            runtime,
            CustomerRegistered(customer_id=customer_id, kind="person", status="customer", registered_at=at),
        )
    m = {
        "m1": (await enrol(runtime, "club", "c-1", now=_at(1, 5))).id,
        "m2": (await enrol(runtime, "club", "c-2", now=_at(1, 5))).id,
        "m3": (await enrol(runtime, "club", "c-3", now=_at(1, 20))).id,
        "m4": (await enrol(runtime, "club", "c-4", now=_at(3, 1))).id,
        "m9": (await enrol(runtime, "club", "c-9", now=_at(4, 1))).id,
        "m7": (await enrol(runtime, "club", "c-7", now=_at(4, 3))).id,
        "m5": (await enrol(runtime, "other", "c-1", now=_at(1, 5))).id,
    }
    await earn(runtime, m["m1"], 500, now=_at(1, 10), reference="m1:1")
    await earn(runtime, m["m2"], 300, now=_at(1, 10), reference="m2:1")
    await earn(runtime, m["m5"], 1000, now=_at(1, 10), reference="m5:1")
    await earn(runtime, m["m3"], 200, now=_at(1, 31, 23, 30), reference="m3:1")
    await spend(runtime, m["m1"], 200, now=_at(2, 15), reference="m1:redeem")
    async with runtime.uow() as uow:
        program = await programs.get_program(uow.session, "club")
        m2 = await programs.get_member(uow.session, m["m2"])
        await ledger.adjust(
            uow.session, program, m2, -50, reason="goodwill undone", actor="staff", now=_at(2, 20)
        )
        m4 = await programs.get_member(uow.session, m["m4"])
        await ledger.earn(uow.session, program, m4, 100, reference="m4:1", pending_days=30, now=_at(3, 5))
        await uow.commit()
    expired = await jobs.expiry_pass(runtime.uow, now=_at(4, 1))
    assert expired.points == 550
    await earn(runtime, m["m2"], 40, now=_at(4, 10), reference="m2:2")
    async with runtime.uow() as uow:
        program = await programs.get_program(uow.session, "club")
        m3 = await programs.get_member(uow.session, m["m3"])
        await ledger.reserve(uow.session, program, m3, 50, reference="m3:reserve", now=_at(4, 10))
        await uow.commit()
    await _deliver(
        runtime,
        CustomerMerged(
            customer_id="c-1", merged_id="c-8", merge_id="mg-1", method="manual", merged_at=_at(4, 4)
        ),
    )
    await _deliver(runtime, CustomerErased(customer_id="c-7", erased_ids=["c-7"], erased_at=_at(4, 5)))
    return m


@pytest.fixture(params=["sqlite"])
async def http(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with database(tmp_path, request.param) as url, loyalty_runtime(url) as runtime:
        await _fixture(runtime)
        async with client(runtime) as c:
            yield c


BOTH = pytest.mark.parametrize("http", ["sqlite", "postgresql"], indirect=True)


@BOTH
async def test_outstanding_liability(http: httpx.AsyncClient) -> None:
    report = (await http.get("/reports/liability")).json()
    club, other = report["programs"]
    assert {k: v for k, v in club.items() if k != "name"} == {
        "program_id": "club",
        "members": 6,
        "available": 190,
        "pending": 100,
        "reserved": 50,
        "outstanding": 340,
        "issued": 1090,
        "redeemed": 200,
        "expired": 550,
        "other": 0,
        "balanced": True,
    }
    assert (other["program_id"], other["outstanding"], other["issued"], other["members"]) == (
        "other",
        1000,
        1000,
        1,
    )
    assert report["total"]["outstanding"] == 1340
    assert report["total"]["issued"] == 2090
    assert report["total"]["balanced"] is True
    only = (await http.get("/reports/liability", params={"program_id": "other"})).json()
    assert [p["program_id"] for p in only["programs"]] == ["other"]


@BOTH
async def test_points_expiring_in_the_next_30_60_90_days(http: httpx.AsyncClient) -> None:
    report = (
        await http.get("/programs/club/reports/expiring", params={"as_of": "2026-04-10T12:00:00Z"})
    ).json()
    assert [
        (w["days"], w["points"], w["members"], w["points_since_previous"]) for w in report["windows"]
    ] == [
        (30, 150, 1, 150),
        (60, 150, 1, 0),
        (90, 190, 2, 40),
    ]
    custom = await http.get(
        "/programs/club/reports/expiring", params=[("as_of", "2026-04-10T12:00:00Z"), ("days", "7")]
    )
    assert [w["points"] for w in custom.json()["windows"]] == [0]
    assert (await http.get("/programs/club/reports/expiring", params={"days": 0})).status_code == 422


@BOTH
async def test_issue_vs_redemption_per_month_in_the_program_time_zone(http: httpx.AsyncClient) -> None:
    report = (
        await http.get(
            "/programs/club/reports/issuance",
            params={"since": "2026-01-01T00:00:00+01:00", "until": "2026-05-01T00:00:00+02:00"},
        )
    ).json()
    months = [
        (m["month"], m["issued"], m["clawed_back"], m["net_issued"], m["redeemed"], m["expired"])
        for m in report["months"]
    ]
    assert months == [
        ("2026-01-01", 800, 0, 800, 0, 0),
        ("2026-02-01", 200, 50, 150, 200, 0),
        ("2026-03-01", 100, 0, 100, 0, 0),
        ("2026-04-01", 40, 0, 40, 0, 550),
    ]
    assert report["total"] == {
        "issued": 1140,
        "clawed_back": 50,
        "net_issued": 1090,
        "redeemed": 200,
        "expired": 550,
    }
    naive = await http.get("/programs/club/reports/issuance", params={"since": "2026-01-01T00:00:00"})
    assert naive.status_code == 422
    assert (await http.get("/programs/nope/reports/issuance")).status_code == 404


async def test_program_penetration(http: httpx.AsyncClient) -> None:
    report = (
        await http.get(
            "/programs/club/reports/penetration",
            params={"since": "2026-01-01T00:00:00+01:00", "until": "2026-05-01T00:00:00+02:00"},
        )
    ).json()
    assert (report["customers"], report["members"], report["members_unknown_customer"]) == (6, 4, 1)
    assert report["penetration"] == 66.67
    assert [
        (
            m["month"],
            m["customers_registered"],
            m["members_enrolled"],
            m["customers"],
            m["members"],
            m["penetration"],
        )
        for m in report["months"]
    ] == [
        ("2026-01-01", 3, 3, 3, 3, 100.0),
        ("2026-02-01", 1, 0, 4, 3, 75.0),
        ("2026-03-01", 1, 1, 5, 4, 80.0),
        ("2026-04-01", 1, 0, 6, 4, 66.67),
    ]


async def test_active_members(http: httpx.AsyncClient) -> None:
    month = (
        await http.get(
            "/programs/club/reports/active-members", params={"as_of": "2026-04-15T00:00:00Z", "days": 30}
        )
    ).json()
    assert (month["members"], month["active"], month["earned"], month["redeemed"]) == (5, 1, 1, 0)
    assert month["active_share"] == 20.0
    quarter = (
        await http.get(
            "/programs/club/reports/active-members", params={"as_of": "2026-04-15T00:00:00Z", "days": 90}
        )
    ).json()
    assert {
        k: quarter[k] for k in ("members", "active", "earned", "redeemed", "earned_and_redeemed", "inactive")
    } == {
        "members": 5,
        "active": 4,
        "earned": 3,
        "redeemed": 1,
        "earned_and_redeemed": 0,
        "inactive": 1,
    }
    assert quarter["active_share"] == 80.0


@pytest.mark.parametrize(
    "path",
    [
        "/reports/liability",
        "/programs/club/reports/expiring",
        "/programs/club/reports/issuance",
        "/programs/club/reports/penetration",
        "/programs/club/reports/active-members",
    ],
)
async def test_every_report_draws_png_and_svg(http: httpx.AsyncClient, path: str) -> None:
    png = await http.get(path, params={"format": "png"})
    assert png.status_code == 200
    assert png.headers["content-type"] == "image/png"
    assert png.content.startswith(PNG_MAGIC)
    svg = await http.get(path, params={"format": "svg"})
    assert svg.headers["content-type"].startswith("image/svg+xml")
    assert ET.fromstring(svg.content).tag.endswith("svg")
    assert (await http.get(path, params={"format": "gif"})).status_code == 422


async def test_reports_are_documented_with_examples(http: httpx.AsyncClient) -> None:
    spec = (await http.get("/openapi.json")).json()
    for path in (
        "/reports/liability",
        "/programs/{program_id}/reports/expiring",
        "/programs/{program_id}/reports/issuance",
        "/programs/{program_id}/reports/penetration",
        "/programs/{program_id}/reports/active-members",
    ):
        content = spec["paths"][path]["get"]["responses"]["200"]["content"]
        assert {"application/json", "image/png", "image/svg+xml"} <= set(content)
    for schema in (
        "LiabilityReport",
        "ExpiringReport",
        "IssuanceReport",
        "PenetrationReport",
        "ActiveMembersReport",
    ):
        assert spec["components"]["schemas"][schema].get("examples"), schema


async def test_known_customers_follow_identity(tmp_path: Path) -> None:
    async with database(tmp_path, "sqlite") as url, loyalty_runtime(url) as runtime:
        await make_program(runtime)
        async with runtime.uow() as uow:
            await known_customers.erased(uow.session, ["late"], _at(1, 2))  # erased before registered
            await known_customers.registered(uow.session, "late", _at(1, 1))
            await known_customers.registered(uow.session, "x", _at(1, 1))
            await known_customers.registered(uow.session, "x", _at(1, 9))  # redelivered: first date kept
            await uow.commit()
        async with client(runtime) as c:
            report = (await c.get("/programs/club/reports/penetration")).json()
        assert report["customers"] == 1
