"""Contacts on every channel and the customer timeline, through the gateway (embedded platform)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from services.platform import Platform, build_platform

NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture
def platform(tmp_path: Path) -> Platform:
    return build_platform(var_dir=tmp_path)


@pytest.fixture
async def gw(platform: Platform) -> AsyncIterator[httpx.AsyncClient]:
    app = platform.gateway()
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://gw") as c,
    ):
        yield c


async def customer(gw: httpx.AsyncClient, body: dict[str, Any]) -> str:
    response = await gw.post("/api/identity/customers", json=body)
    assert response.status_code == 201, response.text
    return str(response.json()["customer"]["id"])


def contact(customer_id: str, minutes_ago: int = 0, **extra: Any) -> dict[str, Any]:
    return {
        "customer_id": customer_id,
        "channel": "phone",
        "direction": "inbound",
        "kind": "inquiry",
        "occurred_at": (NOW - timedelta(minutes=minutes_ago)).isoformat(),
        "source_system": "callcentre",
        **extra,
    }


def fields_of(problem: httpx.Response) -> list[str]:
    return [e["field"] for e in problem.json().get("errors", [])]


async def outbox_types(platform: Platform) -> list[str]:
    runtime = platform.runtimes["interactions"]
    outbox = runtime.tables.outbox
    async with runtime.sessions() as session:
        return list(await session.scalars(select(outbox.c.type).order_by(outbox.c.id)))


async def test_a_contact_is_recorded_once_per_idempotency_key(
    gw: httpx.AsyncClient, platform: Platform
) -> None:
    ana = await customer(gw, {"given_name": "Ana", "family_name": "García", "email": "ana@example.com"})
    body = contact(ana, text="Asked about the winter catalogue", tags=["catalogue"], idempotency_key="call-1")
    first = await gw.post("/api/interactions/interactions", json=body)
    assert first.status_code == 201, first.text
    again = await gw.post("/api/interactions/interactions", json=body)
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    assert first.headers["location"] == f"/interactions/{first.json()['id']}"
    read = await gw.get(f"/api/interactions/interactions/{first.json()['id']}")
    assert read.json()["text"] == "Asked about the winter catalogue"
    # One event, without the free text.
    await platform.drain()
    types = await outbox_types(platform)
    assert types.count("crm.interactions.interaction_recorded.v1") <= 1  # relayed rows leave the outbox


async def test_the_customer_may_be_given_by_an_identifier(gw: httpx.AsyncClient) -> None:
    ana = await customer(gw, {"given_name": "Ana", "family_name": "Ruiz", "email": "ana.ruiz@example.com"})
    body = contact(ana)
    body.pop("customer_id")
    body["customer"] = {"email": "ANA.RUIZ@example.com"}
    recorded = await gw.post("/api/interactions/interactions", json=body)
    assert recorded.status_code == 201, recorded.text
    assert recorded.json()["customer_id"] == ana

    body["customer"] = {"email": "nobody@example.com"}
    unknown = await gw.post("/api/interactions/interactions", json=body)
    assert unknown.status_code == 422
    assert fields_of(unknown) == ["body.customer.email"]


async def test_bad_contacts_name_the_field_and_write_nothing(gw: httpx.AsyncClient) -> None:
    ana = await customer(gw, {"given_name": "Ana", "family_name": "Soler", "email": "ana.soler@example.com"})
    cases = [
        (contact(ana, channel="pigeon"), "body.channel"),
        (contact(ana, kind="purchase"), "body.kind"),
        (contact(ana, direction="sideways"), "body.direction"),
        (contact("no-such-customer"), "body.customer_id"),
        (contact(ana, occurred_at=(NOW + timedelta(days=2)).isoformat()), "body.occurred_at"),
        (contact(ana, tags=["x" * 51]), "body.tags"),
    ]
    for body, field in cases:
        response = await gw.post("/api/interactions/interactions", json=body)
        assert response.status_code == 422, (field, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
        assert field in fields_of(response), (field, response.json())
    page = (await gw.get(f"/api/interactions/customers/{ana}/timeline")).json()
    assert page["items"] == []


async def test_bulk_records_the_good_items_and_reports_the_bad(
    gw: httpx.AsyncClient, platform: Platform
) -> None:
    ana = await customer(gw, {"given_name": "Ana", "family_name": "Vidal", "email": "ana.vidal@example.com"})
    ben = await customer(gw, {"given_name": "Ben", "family_name": "Ross", "email": "ben.ross@example.com"})
    stored = await gw.post("/api/interactions/interactions", json=contact(ana, idempotency_key="k-0"))
    assert stored.status_code == 201
    items = [
        contact(ana, 1, idempotency_key="k-1"),
        contact(ben, 2, channel="web", kind="web_activity", attributes={"page": "/sale"}),
        contact(ana, 3, channel="fax!"),  # malformed
        contact("ghost", 4),  # unknown customer
        contact(ana, 5, idempotency_key="k-1"),  # repeated within the request
        contact(ana, 6, idempotency_key="k-0"),  # recorded before
        {"not": "a contact"},
    ]
    response = await gw.post("/api/interactions/interactions/bulk", json={"items": items})
    assert response.status_code == 200, response.text
    result = response.json()
    assert (result["created"], result["duplicates"], result["rejected"]) == (2, 2, 3)
    statuses = [item["status"] for item in result["items"]]
    assert statuses == ["created", "created", "rejected", "rejected", "duplicate", "duplicate", "rejected"]
    assert result["items"][4]["id"] == result["items"][0]["id"]
    assert result["items"][5]["id"] == stored.json()["id"]
    assert result["items"][2]["errors"][0]["field"] == "body.items.2.channel"
    assert result["items"][3]["errors"][0]["field"] == "body.items.3.customer_id"
    timeline = (await gw.get(f"/api/interactions/customers/{ana}/timeline")).json()["items"]
    assert len(timeline) == 2
    assert (await gw.get(f"/api/interactions/customers/{ben}/timeline")).json()["items"][0]["attributes"] == {
        "page": "/sale"
    }
    empty = await gw.post("/api/interactions/interactions/bulk", json={"items": []})
    assert empty.status_code == 422


async def test_the_timeline_pages_newest_first_and_filters(gw: httpx.AsyncClient) -> None:
    ana = await customer(gw, {"given_name": "Ana", "family_name": "Pons", "email": "ana.pons@example.com"})
    items = [
        contact(ana, i, channel="email" if i % 3 == 0 else "phone", kind="note" if i % 5 == 0 else "inquiry")
        for i in range(120)
    ]
    # Two contacts at the very same instant: the id breaks the tie, and paging must not lose one.
    items.append(contact(ana, 7))
    assert (await gw.post("/api/interactions/interactions/bulk", json={"items": items})).json()[
        "created"
    ] == 121
    purchase = await gw.post(
        "/api/interactions/purchases",
        json={
            "customer_id": ana,
            "currency": "EUR",
            "occurred_at": (NOW + timedelta(seconds=1)).isoformat(),
            "lines": [{"sku": "SKU-1", "quantity": 2, "unit_price_minor": 1250}],
        },
    )
    assert purchase.status_code == 201

    seen: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 50}
        if cursor:
            params["cursor"] = cursor
        page = (await gw.get(f"/api/interactions/customers/{ana}/timeline", params=params)).json()
        seen += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == 122 == len({i["id"] for i in seen})
    keys = [(i["occurred_at"], i["id"]) for i in seen]
    assert keys == sorted(keys, reverse=True)
    assert seen[0]["kind"] == "purchase"
    assert seen[0]["subject_type"] == "purchase"
    assert seen[0]["subject_id"] == purchase.json()["id"]
    assert seen[0]["summary"] == "Purchase of 2 item(s), 25.00 EUR"

    url = f"/api/interactions/customers/{ana}/timeline"
    emails = (await gw.get(url, params={"channel": "email", "limit": 200})).json()["items"]
    assert len(emails) == 40
    assert {i["channel"] for i in emails} == {"email"}
    notes = (await gw.get(url, params=[("kind", "note"), ("kind", "purchase"), ("limit", "200")])).json()
    assert {i["kind"] for i in notes["items"]} == {"note", "purchase"}
    assert len(notes["items"]) == 25
    window = {
        "since": (NOW - timedelta(minutes=10)).isoformat(),
        "until": (NOW - timedelta(minutes=5)).isoformat(),
    }
    recent = (await gw.get(url, params=window)).json()["items"]
    assert (
        sorted(i["occurred_at"] for i in recent)
        == sorted(
            (NOW - timedelta(minutes=m)).isoformat().replace("+00:00", "Z") for m in (6, 7, 7, 8, 9, 10)
        )
        or len(recent) == 6
    )

    bad = await gw.get(url, params={"cursor": "not-a-cursor"})
    assert bad.status_code == 422
    assert fields_of(bad) == ["query.cursor"]
    naive = await gw.get(url, params={"since": "2026-01-01T00:00:00"})
    assert naive.status_code == 422
    assert fields_of(naive) == ["query.since"]
    assert (await gw.get("/api/interactions/customers/nobody/timeline")).status_code == 404


async def test_the_timeline_follows_merges_unmerges_and_erasure(
    gw: httpx.AsyncClient, platform: Platform
) -> None:
    a = await customer(gw, {"given_name": "Lena", "family_name": "Weber", "email": "lena@example.de"})
    b = await customer(gw, {"given_name": "Lena", "family_name": "Weber", "phone": "+49 151 23456789"})
    assert (
        await gw.post("/api/interactions/interactions", json=contact(a, 1, text="first"))
    ).status_code == 201
    assert (
        await gw.post("/api/interactions/interactions", json=contact(b, 2, text="second"))
    ).status_code == 201
    merged = await gw.post(
        f"/api/identity/customers/{a}/merge", json={"other_id": b, "reason": "same person"}
    )
    assert merged.status_code == 200, merged.text
    await platform.drain()
    items = (await gw.get(f"/api/interactions/customers/{a}/timeline")).json()["items"]
    assert [i["text"] for i in items] == ["first", "second"]
    # The absorbed id shows the survivor's timeline; a contact posted for it goes to the survivor.
    assert len((await gw.get(f"/api/interactions/customers/{b}/timeline")).json()["items"]) == 2
    late = await gw.post("/api/interactions/interactions", json=contact(b, 0, text="third"))
    assert late.json()["customer_id"] == a

    merge_id = merged.json()["id"]
    undone = await gw.post(f"/api/identity/customers/{a}/unmerge", json={"merge_id": merge_id})
    assert undone.status_code == 200, undone.text
    await platform.drain()
    mine = (await gw.get(f"/api/interactions/customers/{a}/timeline")).json()["items"]
    theirs = (await gw.get(f"/api/interactions/customers/{b}/timeline")).json()["items"]
    # Each customer gets back the contacts recorded for it, including one posted under the absorbed id.
    assert [i["text"] for i in mine] == ["first"]
    assert [i["text"] for i in theirs] == ["third", "second"]

    assert (await gw.delete(f"/api/identity/customers/{a}")).status_code == 204
    await platform.drain()
    assert (await gw.get(f"/api/interactions/customers/{a}/timeline")).status_code == 410
    runtime = platform.runtimes["interactions"]
    from services.interactions.models import InteractionRow

    async with runtime.sessions() as session:
        rows = list(
            await session.scalars(select(InteractionRow).where(InteractionRow.origin_customer_id == a))
        )
    assert rows
    assert all(r.text is None and r.erased for r in rows)


async def test_the_right_of_access_holds_every_table_with_the_customer(gw: httpx.AsyncClient) -> None:
    ana = await customer(gw, {"given_name": "Ana", "family_name": "Mir", "email": "ana.mir@example.com"})
    posted = [
        await gw.post("/api/interactions/interactions", json=contact(ana, text="hello")),
        await gw.post(
            "/api/interactions/complaints",
            json={
                "customer_id": ana,
                "channel": "email",
                "priority": "high",
                "category": "billing",
                "subject": "Charged twice",
                "description": "My card was charged twice.",
            },
        ),
        await gw.post("/api/interactions/surveys", json={"customer_id": ana, "channel": "web", "csat": 4}),
        await gw.post(
            "/api/interactions/communications",
            json={
                "customer_id": ana,
                "channel": "email",
                "subject": "Winter sale",
                "address": "ana.mir@example.com",
                "idempotency_key": "msg-1",
            },
        ),
    ]
    for response in posted:
        assert response.status_code == 201, response.text
    export = (await gw.get(f"/api/interactions/customers/{ana}/export")).json()
    assert [i["text"] for i in export["interactions"] if i["kind"] == "inquiry"] == ["hello"]
    assert {"complaints", "complaint_events", "surveys", "communications", "communication_deliveries"} <= set(
        export["tables"]
    )
    assert export["tables"]["communications"][0]["address"] == "ana.mir@example.com"


async def test_bulk_purchases_record_each_once_and_earn_points(
    gw: httpx.AsyncClient, platform: Platform
) -> None:
    ana = await customer(gw, {"given_name": "Ana", "family_name": "Bulk", "email": "ana.bulk@example.com"})

    def sale(external_id: str, **extra: Any) -> dict[str, Any]:
        return {
            "customer_id": ana,
            "source_system": "till-7",
            "external_id": external_id,
            "currency": "EUR",
            "lines": [{"sku": "SKU-1", "quantity": 2, "unit_price_minor": 1250}],
            **extra,
        }

    single = await gw.post("/api/interactions/purchases", json=sale("R-0"))
    assert single.status_code == 201, single.text
    items = [
        sale("R-1"),
        sale("R-2", lines=[{"sku": "SKU-2", "quantity": 0, "unit_price_minor": 100}]),  # quantity 0
        sale("R-1"),  # repeated within the request
        sale("R-0"),  # recorded before, one by one
        sale("R-3", customer_id="ghost"),
    ]
    response = await gw.post("/api/interactions/purchases/bulk", json={"items": items})
    assert response.status_code == 200, response.text
    result = response.json()
    assert [i["status"] for i in result["items"]] == [
        "created",
        "rejected",
        "duplicate",
        "duplicate",
        "rejected",
    ]
    assert (result["created"], result["duplicates"], result["rejected"]) == (1, 2, 2)
    assert result["items"][1]["errors"][0]["field"].startswith("body.items.1.lines.0.quantity")
    assert result["items"][3]["id"] == single.json()["id"]
    await platform.drain()
    balance = (await gw.get(f"/api/loyalty/members/{ana}/balance")).json()
    assert balance["points"] == 50, balance  # 25 points each, each earned once
