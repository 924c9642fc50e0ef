"""A segment's membership over time (`GET /segments/{id}/history`): every entry and exit is recorded in
the transaction that changes the membership, agrees with the `segment_entered`/`segment_exited` events,
and is bucketed by day, week or month in SQL; an erased customer's history goes. Embedded platform
through the gateway (SQLite), and the bucketing again on PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from services.platform import Platform, build_platform
from services.segmentation.app import MIGRATIONS, build
from services.segmentation.models import MESSAGING, CustomerFeatures
from services.segmentation.repository import FeatureRepository
from services.segmentation.segments import service as segments
from services.segmentation.segments.models import SegmentHistory
from services.segmentation.segments.schemas import SegmentIn
from services.segmentation.settings import load_settings
from shared.contracts.segmentation import SegmentEntered, SegmentExited
from shared.events.envelope import EventPayload
from shared.messaging.bus import InProcessBus
from shared.migrations import upgrade
from tests.support.platform import gateway_client, new_customer, watch

API = "/api/segmentation"


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# A made-up past for one segment: c4 entered before the range; c1, c2 and c3 enter, c1 and c2 leave.
PAST = [
    ("c4", "entered", "2024-12-31T23:59:00"),
    ("c1", "entered", "2025-01-02T10:00:00"),  # a Thursday
    ("c2", "entered", "2025-01-06T09:00:00"),  # a Monday
    ("c1", "exited", "2025-01-07T12:00:00"),
    ("c3", "entered", "2025-01-20T00:00:00"),
    ("c2", "exited", "2025-02-03T08:00:00"),
]


def figures(body: dict[str, Any]) -> list[tuple[str, str, int, int, int]]:
    return [(b["start"], b["end"], b["members"], b["entered"], b["exited"]) for b in body["buckets"]]


async def check_buckets(client: httpx.AsyncClient, prefix: str, segment_id: str) -> None:
    """The series of `PAST` in weeks, months and days, and a range starting mid-day."""
    url = f"{prefix}/segments/{segment_id}/history"
    week = await client.get(
        url, params={"since": "2025-01-01T00:00:00Z", "until": "2025-02-10T00:00:00Z", "interval": "week"}
    )
    assert week.status_code == 200, week.text
    assert week.json()["members_at_start"] == 1
    assert figures(week.json()) == [
        ("2024-12-30", "2025-01-06", 2, 1, 0),
        ("2025-01-06", "2025-01-13", 2, 1, 1),
        ("2025-01-13", "2025-01-20", 2, 0, 0),
        ("2025-01-20", "2025-01-27", 3, 1, 0),
        ("2025-01-27", "2025-02-03", 3, 0, 0),
        ("2025-02-03", "2025-02-10", 2, 0, 1),
    ]
    month = await client.get(
        url, params={"since": "2025-01-01T00:00:00Z", "until": "2025-02-10T00:00:00Z", "interval": "month"}
    )
    assert figures(month.json()) == [
        ("2025-01-01", "2025-02-01", 3, 3, 1),
        ("2025-02-01", "2025-03-01", 2, 0, 1),
    ]
    day = await client.get(
        url, params={"since": "2025-01-06T00:00:00+00:00", "until": "2025-01-08T00:00:00Z"}
    )
    assert day.json()["interval"] == "day"
    assert day.json()["members_at_start"] == 2
    assert figures(day.json()) == [
        ("2025-01-06", "2025-01-07", 3, 1, 0),
        ("2025-01-07", "2025-01-08", 2, 0, 1),
    ]
    # Since 12:00 on the 2nd: c1's entry at 10:00 is before the range, so it counts at the start.
    mid = await client.get(url, params={"since": "2025-01-02T12:00:00Z", "until": "2025-01-03T00:00:00Z"})
    assert (mid.json()["members_at_start"], figures(mid.json())) == (
        2,
        [("2025-01-02", "2025-01-03", 2, 0, 0)],
    )
    # In another time zone: the same instants, UTC buckets.
    shifted = await client.get(
        url, params={"since": "2025-01-06T01:00:00+01:00", "until": "2025-01-08T01:00:00+01:00"}
    )
    assert figures(shifted.json()) == figures(day.json())


async def add_past(sessions: Any, segment_id: str) -> None:
    async with sessions() as session:
        await session.execute(
            insert(SegmentHistory),
            [
                {
                    "segment_id": segment_id,
                    "customer_id": c,
                    "change": change,
                    "cause": "upload",
                    "at": utc(at),
                }
                for c, change, at in PAST
            ],
        )
        await session.commit()


# ---- embedded platform, through the gateway ---------------------------------------------------------


@pytest.fixture
def platform(tmp_path: Path) -> Platform:
    return build_platform(var_dir=tmp_path)


@pytest.fixture
def seen(platform: Platform) -> list[EventPayload]:
    """What a subscriber of the segments topic receives (a consumer group of its own)."""
    return watch(platform, "segmentation", "e2e-segment-history-watcher", SegmentEntered, SegmentExited)


@pytest.fixture
async def gw(platform: Platform, seen: list[EventPayload]) -> AsyncIterator[httpx.AsyncClient]:
    async with gateway_client(platform) as client:
        yield client


customer = new_customer


async def buy(gw: httpx.AsyncClient, customer_id: str, price: int) -> str:
    response = await gw.post(
        "/api/interactions/purchases",
        json={
            "customer_id": customer_id,
            "currency": "EUR",
            "channel": "web",
            "lines": [{"sku": "SKU-1", "quantity": 1, "unit_price_minor": price}],
        },
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def history_rows(platform: Platform, segment_id: str) -> list[tuple[str, str, str]]:
    async with platform.runtimes["segmentation"].sessions() as session:
        rows = await session.execute(
            select(SegmentHistory.customer_id, SegmentHistory.change, SegmentHistory.cause)
            .where(SegmentHistory.segment_id == segment_id)
            .order_by(SegmentHistory.id)
        )
        return [(c, change, cause) for c, change, cause in rows]


async def today(gw: httpx.AsyncClient, segment_id: str) -> dict[str, Any]:
    response = await gw.get(f"{API}/segments/{segment_id}/history", params={"interval": "day"})
    assert response.status_code == 200, response.text
    body = dict(response.json())
    assert len(body["buckets"]) == 91  # the default range: the 90 days before now, touching 91 days
    assert all(b["entered"] == b["exited"] == 0 for b in body["buckets"][:-1])
    return body


async def test_entries_and_exits_show_in_the_series(
    gw: httpx.AsyncClient, platform: Platform, seen: list[EventPayload]
) -> None:
    big = await customer(gw, "big@example.com")
    ana = await customer(gw, "ana@example.com")
    await buy(gw, big, 20_000)
    await platform.drain()

    created = await gw.post(
        f"{API}/segments",
        json={"name": "Spenders", "rule": {"field": "net_spend_minor", "op": ">=", "value": 10_000}},
    )
    assert created.status_code == 201, created.text
    sid = created.json()["segment"]["id"]
    # The backfill wrote history in the same transaction: there the moment the segment exists.
    assert await history_rows(platform, sid) == [(big, "entered", "backfill")]
    body = await today(gw, sid)
    assert (body["members_at_start"], figures(body)[-1][2:]) == (0, (1, 1, 0))

    # Ana buys and enters (real time), then gets her money back and leaves.
    order = await buy(gw, ana, 20_000)
    await platform.drain()
    refunded = await gw.post(
        f"/api/interactions/purchases/{order}/refunds",
        json={
            "lines": [{"line_no": 1, "quantity": 1}],
            "reason": "x",
            "source_system": "web",
            "idempotency_key": "R-1",
        },
    )
    assert refunded.status_code == 201, refunded.text
    await platform.drain()
    rows = await history_rows(platform, sid)
    assert rows == [(big, "entered", "backfill"), (ana, "entered", "event"), (ana, "exited", "event")]
    last = figures(await today(gw, sid))[-1]
    assert last[2:] == (1, 2, 1)  # members at the end of today, entered, exited
    # Each history row agrees with the event published for it (customer, change, cause, time).
    events = [
        (e.customer_id, "entered" if isinstance(e, SegmentEntered) else "exited", e.cause, e.at)
        for e in seen
        if isinstance(e, SegmentEntered | SegmentExited) and e.segment_id == sid
    ]
    async with platform.runtimes["segmentation"].sessions() as session:
        stored = [
            (c, change, cause, at)
            for c, change, cause, at in await session.execute(
                select(
                    SegmentHistory.customer_id, SegmentHistory.change, SegmentHistory.cause, SegmentHistory.at
                )
                .where(SegmentHistory.segment_id == sid)
                .order_by(SegmentHistory.id)
            )
        ]
    assert events == stored

    # Erasure: the customer leaves, and every history row of theirs goes (the series forgets them).
    assert (await gw.delete(f"/api/identity/customers/{big}")).status_code == 204
    await platform.drain()
    assert [r for r in await history_rows(platform, sid) if r[0] == big] == []
    async with platform.runtimes["segmentation"].sessions() as session:
        assert (
            list(await session.scalars(select(SegmentHistory.id).where(SegmentHistory.customer_id == big)))
            == []
        )
    last = figures(await today(gw, sid))[-1]
    assert last[2:] == (0, 1, 1)
    assert (await gw.get(f"{API}/segments/{sid}")).json()["member_count"] == 0
    # The exit was still announced, with cause erasure.
    assert any(isinstance(e, SegmentExited) and e.customer_id == big and e.cause == "erasure" for e in seen)


async def test_a_merge_is_the_cause_of_the_moves_it_makes(gw: httpx.AsyncClient, platform: Platform) -> None:
    a = await customer(gw, "a@example.com")
    b = await customer(gw, "b@example.com")
    await buy(gw, a, 6_000)
    await buy(gw, b, 6_000)
    await platform.drain()
    sid = (
        await gw.post(
            f"{API}/segments",
            json={"name": "Big", "rule": {"field": "net_spend_minor", "op": ">=", "value": 10_000}},
        )
    ).json()["segment"]["id"]
    assert await history_rows(platform, sid) == []
    merged = await gw.post(
        f"/api/identity/customers/{a}/merge", json={"other_id": b, "reason": "same person"}
    )
    assert merged.status_code == 200, merged.text
    await platform.drain()
    # Together they spent 12,000: the survivor enters because of the merge.
    assert await history_rows(platform, sid) == [(a, "entered", "merge")]


async def test_static_uploads_deletion_and_buckets(gw: httpx.AsyncClient, platform: Platform) -> None:
    ana = await customer(gw, "ana@example.com")
    bob = await customer(gw, "bob@example.com")
    await platform.drain()
    created = await gw.post(f"{API}/segments", json={"name": "Fair visitors", "kind": "static"})
    sid = created.json()["segment"]["id"]
    await add_past(platform.runtimes["segmentation"].sessions, sid)
    await check_buckets(gw, API, sid)

    await gw.post(f"{API}/segments/{sid}/members", json={"customer_ids": [ana, bob]})
    await gw.post(f"{API}/segments/{sid}/members", json={"customer_ids": [bob], "replace": True})
    assert (await history_rows(platform, sid))[len(PAST) :] == [
        (ana, "entered", "upload"),
        (bob, "entered", "upload"),
        (ana, "exited", "upload"),
    ]
    # The made-up past left two members (c3, c4) that are not members now; today adds ana and bob.
    last = figures(await today(gw, sid))[-1]
    assert last[2:] == (2 + 1, 2, 1)

    assert (await gw.delete(f"{API}/segments/{sid}")).status_code == 204
    assert (await history_rows(platform, sid))[-1] == (bob, "exited", "deletion")  # the history stays
    assert (await gw.get(f"{API}/segments/{sid}/history")).status_code == 404


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"since": "2025-02-01T00:00:00Z", "until": "2025-01-01T00:00:00Z"}, "query.since"),
        ({"since": "2025-01-01T00:00:00Z", "until": "2025-01-01T00:00:00Z"}, "query.since"),
        ({"since": "2020-01-01T00:00:00Z", "until": "2025-01-01T00:00:00Z"}, "query.since"),
        ({"since": "2025-01-01T00:00:00"}, "query.since"),
        ({"until": "2025-01-01T00:00:00"}, "query.until"),
        ({"until": "yesterday"}, "query.until"),
        ({"interval": "year"}, "query.interval"),
        ({"until": "9999-12-31T00:00:00Z", "interval": "month"}, "query.until"),
        ({"since": "0001-01-01T00:00:00Z"}, "query.since"),
        ({"until": "0001-01-02T00:00:00Z"}, "query.until"),
    ],
)
async def test_bad_parameters_are_a_422_naming_the_field(
    gw: httpx.AsyncClient, params: dict[str, str], field: str
) -> None:
    sid = (await gw.post(f"{API}/segments", json={"name": "Static", "kind": "static"})).json()["segment"][
        "id"
    ]
    response = await gw.get(f"{API}/segments/{sid}/history", params=params)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert [e["field"] for e in response.json()["errors"]] == [field]


async def test_the_route_is_documented_with_an_example(platform: Platform) -> None:
    document = platform.runtimes["segmentation"].app.openapi()
    operation = document["paths"]["/segments/{segment_id}/history"]["get"]
    assert {p["name"] for p in operation["parameters"]} >= {"segment_id", "since", "until", "interval"}
    assert {"200", "404", "422"} <= set(operation["responses"])
    schema = document["components"]["schemas"]["SegmentHistoryOut"]
    assert schema["examples"][0]["buckets"][1]["members"] == 1180


# ---- PostgreSQL --------------------------------------------------------------------------------------


async def test_history_on_postgres(pg_database: str) -> None:
    runtime = build(load_settings(database_url=pg_database), InProcessBus())
    await runtime.start()
    await runtime.relay.stop()
    try:
        transport = httpx.ASGITransport(app=runtime.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://segmentation") as client:
            created = await client.post("/segments", json={"name": "Fair visitors", "kind": "static"})
            assert created.status_code == 201, created.text
            sid = created.json()["segment"]["id"]
            await add_past(runtime.sessions, sid)
            await check_buckets(client, "", sid)
            bad = await client.get(f"/segments/{sid}/history", params={"since": "2030-01-01T00:00:00Z"})
            assert bad.status_code == 422
            assert bad.json()["errors"][0]["field"] == "query.since"
            # Erasure forgets the customer's history on PostgreSQL too.
            async with runtime.uow() as uow:
                await segments.forget(uow.session, ["c1"])
                await uow.commit()
            week = await client.get(
                f"/segments/{sid}/history",
                params={"since": "2025-01-01T00:00:00Z", "until": "2025-01-13T00:00:00Z", "interval": "week"},
            )
            assert [b["members"] for b in week.json()["buckets"]] == [1, 2]
            assert datetime.fromisoformat(week.json()["until"]) - datetime.fromisoformat(
                week.json()["since"]
            ) == timedelta(days=12)
    finally:
        await runtime.stop()


# ---- the batch path: set-based history, in agreement with the outbox -----------------------------


async def check_batch_history(url: str) -> None:
    """A backfill and an edit move many customers at once: the history rows (written by INSERT …
    SELECT in the statement or transaction of the change) are exactly the moves, and agree with the
    `segment_entered`/`segment_exited` events in the outbox."""
    runtime = build(load_settings(database_url=url), InProcessBus())
    await runtime.start()
    await runtime.relay.stop()
    try:
        async with runtime.sessions() as session:
            for i in range(12):
                await FeatureRepository(session).ensure_customer(f"c{i:02}")
                await session.execute(
                    update(CustomerFeatures)
                    .where(CustomerFeatures.customer_id == f"c{i:02}")
                    .values(purchase_count=i)
                )
            await session.commit()
        rule = {"field": "purchase_count", "op": ">=", "value": 4}
        created = await segments.create(runtime.uow(), SegmentIn(name="Regulars", rule=rule))
        sid = created.segment.id
        assert (created.entered, created.exited) == (8, 0)
        narrower = {"field": "purchase_count", "op": ">=", "value": 7}
        replaced = await segments.replace(runtime.uow(), sid, SegmentIn(name="Regulars", rule=narrower))
        assert (replaced.entered, replaced.exited) == (0, 3)
        async with runtime.sessions() as session:
            stored = sorted(
                (c, change, cause)
                for c, change, cause in await session.execute(
                    select(SegmentHistory.customer_id, SegmentHistory.change, SegmentHistory.cause).where(
                        SegmentHistory.segment_id == sid
                    )
                )
            )
            outbox = MESSAGING.outbox
            published = sorted(
                (
                    e["data"]["customer_id"],
                    "entered" if t.endswith("entered.v1") else "exited",
                    e["data"]["cause"],
                )
                for t, e in await session.execute(
                    select(outbox.c.type, outbox.c.envelope).where(outbox.c.type.like("%segment_%"))
                )
            )
        assert stored == sorted(
            [(f"c{i:02}", "entered", "backfill") for i in range(4, 12)]
            + [(f"c{i:02}", "exited", "backfill") for i in range(4, 7)]
        )
        assert published == stored
    finally:
        await runtime.stop()


async def test_batch_history_agrees_with_the_events(tmp_path: Path) -> None:
    await check_batch_history(f"sqlite+aiosqlite:///{tmp_path / 'segmentation.db'}")


async def test_batch_history_agrees_with_the_events_on_postgres(pg_database: str) -> None:
    await check_batch_history(pg_database)


# ---- the migration that forgets earlier erasures ------------------------------------------------


async def test_the_migration_forgets_history_of_customers_erased_before(tmp_path: Path) -> None:
    await forget_on_upgrade(f"sqlite+aiosqlite:///{tmp_path / 'segmentation.db'}")


async def test_the_migration_forgets_history_of_customers_erased_before_on_postgres(pg_database: str) -> None:
    await forget_on_upgrade(pg_database)


async def forget_on_upgrade(url: str) -> None:
    await upgrade(url, MIGRATIONS, "0007")
    engine = create_async_engine(url)
    try:
        async with AsyncSession(engine) as session:
            for customer_id, erased in (("gone", True), ("kept", False)):
                await FeatureRepository(session).ensure_customer(customer_id)
                await session.execute(
                    update(CustomerFeatures)
                    .where(CustomerFeatures.customer_id == customer_id)
                    .values(erased=erased)
                )
                await session.execute(
                    insert(SegmentHistory).values(
                        segment_id="s",
                        customer_id=customer_id,
                        change="entered",
                        cause="event",
                        at=utc("2025-01-01"),
                    )
                )
            await session.commit()
        await upgrade(url, MIGRATIONS)
        async with engine.connect() as conn:
            left = (await conn.execute(text("SELECT customer_id FROM segment_history"))).scalars().all()
        assert left == ["kept"]
    finally:
        await engine.dispose()
