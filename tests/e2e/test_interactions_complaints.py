"""Complaints through the gateway (embedded platform): the lifecycle to closure with the customer's
agreement, refused changes, reopening, the SLA watch (escalating once per complaint and target), the
work queue, policies, the compliance report, merges and idempotent opening."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from services.interactions.app import MIGRATIONS
from services.interactions.complaints import sla
from services.interactions.complaints.domain import SlaTarget
from services.interactions.complaints.models import Complaint
from services.interactions.models import MESSAGING
from services.platform import Platform, build_platform
from shared.contracts.interactions import ComplaintOpened, ComplaintSlaBreached, ComplaintStatusChanged
from shared.db import create_engine, session_factory
from shared.events.envelope import CloudEvent, EventPayload
from shared.messaging.consumer import EventConsumer
from shared.migrations import upgrade
from shared.uow import UnitOfWork, UnitOfWorkFactory

API = "/api/interactions"


@pytest.fixture
def platform(tmp_path: Path) -> Platform:
    return build_platform(var_dir=tmp_path)


@pytest.fixture
def seen(platform: Platform) -> list[EventPayload]:
    """What a subscriber of the complaints topic receives (a consumer group of its own)."""
    received: list[EventPayload] = []
    watcher = EventConsumer("e2e-complaint-watcher", platform.runtimes["interactions"].uow)

    async def keep(_uow: UnitOfWork, payload: EventPayload, _envelope: CloudEvent) -> None:
        received.append(payload)

    for payload_class in (ComplaintOpened, ComplaintStatusChanged, ComplaintSlaBreached):
        watcher.on(payload_class)(keep)
    platform.bus.subscribe(watcher)
    return received


@pytest.fixture
async def gw(platform: Platform, seen: list[EventPayload]) -> AsyncIterator[httpx.AsyncClient]:
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


async def open_complaint(gw: httpx.AsyncClient, customer_id: str, **extra: Any) -> dict[str, Any]:
    body = {
        "customer_id": customer_id,
        "channel": "email",
        "priority": "high",
        "category": "billing",
        "subject": "Charged twice",
        "description": "My card was charged twice for the same order.",
        **extra,
    }
    response = await gw.post(f"{API}/complaints", json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


async def move(gw: httpx.AsyncClient, complaint_id: str, to: str, **extra: Any) -> httpx.Response:
    return await gw.post(f"{API}/complaints/{complaint_id}/status", json={"status": to, **extra})


def ago(**delta: float) -> str:
    return (datetime.now(UTC) - timedelta(**delta)).isoformat()


def at(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def fields_of(problem: httpx.Response) -> list[str]:
    return [e["field"] for e in problem.json().get("errors", [])]


def of_type(seen: list[EventPayload], kind: type[EventPayload]) -> list[Any]:
    return [e for e in seen if isinstance(e, kind)]


async def test_a_complaint_goes_from_opened_to_closed_with_the_customers_agreement(
    gw: httpx.AsyncClient, platform: Platform, seen: list[EventPayload]
) -> None:
    ana = await customer(gw, {"given_name": "Ana", "family_name": "García", "email": "ana@example.es"})
    opened = await open_complaint(
        gw, ana, owner_id="agent-17", owner_authority_minor=5000, owner_authority_currency="EUR"
    )
    cid = opened["id"]
    assert opened["status"] == "opened"
    assert opened["answered"] is False
    assert opened["allowed_next"] == ["acknowledged", "in_progress", "resolved"]
    assert at(opened["first_response_due"]) - at(opened["opened_at"]) == timedelta(hours=4)
    assert at(opened["resolution_due"]) - at(opened["opened_at"]) == timedelta(hours=72)
    assert opened["next_due_at"] == opened["first_response_due"]
    assert [(e["seq"], e["kind"], e["text"]) for e in opened["events"]] == [
        (1, "opened", "My card was charged twice for the same order.")
    ]

    acknowledged = await move(gw, cid, "acknowledged", actor_id="agent-17")
    assert acknowledged.status_code == 200, acknowledged.text
    assert acknowledged.json()["first_response_at"] is not None
    assert acknowledged.json()["next_due_at"] == opened["resolution_due"]
    assert (await move(gw, cid, "in_progress")).status_code == 200
    resolved = await move(gw, cid, "resolved", note="Refunded the double charge.")
    assert resolved.status_code == 200
    assert resolved.json()["resolved_at"] is not None
    assert resolved.json()["next_due_at"] is None

    # Closing without the customer's agreement is refused, and nothing is written.
    refused = await move(gw, cid, "closed")
    assert refused.status_code == 422
    assert fields_of(refused) == ["body.customer_agreed"]
    unchanged = (await gw.get(f"{API}/complaints/{cid}")).json()
    assert (unchanged["status"], unchanged["version"], len(unchanged["events"])) == (
        "resolved",
        resolved.json()["version"],
        4,
    )

    closed = await move(gw, cid, "closed", customer_agreed=True, actor_id="agent-17")
    assert closed.status_code == 200, closed.text
    body = closed.json()
    assert body["status"] == "closed"
    assert body["closed_at"] is not None
    assert body["allowed_next"] == ["reopened"]
    assert [(e["kind"], e["from_status"], e["to_status"]) for e in body["events"]] == [
        ("opened", None, "opened"),
        ("status_changed", "opened", "acknowledged"),
        ("status_changed", "acknowledged", "in_progress"),
        ("status_changed", "in_progress", "resolved"),
        ("status_changed", "resolved", "closed"),
    ]
    assert closed.headers["ETag"] == f'"{body["version"]}"'

    timeline = (await gw.get(f"{API}/customers/{ana}/timeline", params={"kind": "complaint"})).json()
    assert [(i["subject_type"], i["subject_id"]) for i in timeline["items"]] == [("complaint", cid)]

    await platform.drain()
    assert [(e.complaint_id, e.priority, e.owner_id) for e in of_type(seen, ComplaintOpened)] == [
        (cid, "high", "agent-17")
    ]
    changes = of_type(seen, ComplaintStatusChanged)
    assert [(e.to_status, e.answered, e.open) for e in changes] == [
        ("acknowledged", True, True),
        ("in_progress", True, True),
        ("resolved", True, True),
        ("closed", True, False),
    ]
    assert all(e.customer_id == ana and e.category == "billing" for e in changes)


async def test_refused_changes_name_the_field_and_write_nothing(gw: httpx.AsyncClient) -> None:
    ana = await customer(gw, {"given_name": "Ana", "family_name": "Ruiz", "email": "ruiz@example.es"})
    cid = (await open_complaint(gw, ana))["id"]

    forbidden = await move(gw, cid, "closed", customer_agreed=True)
    assert forbidden.status_code == 409
    assert fields_of(forbidden) == ["body.status"]
    assert forbidden.json()["allowed_next"] == ["acknowledged", "in_progress", "resolved"]
    assert (await move(gw, cid, "in_progress")).status_code == 200
    backwards = await move(gw, cid, "acknowledged")
    assert backwards.status_code == 409
    assert backwards.json()["allowed_next"] == ["resolved"]

    unknown = await gw.post(
        f"{API}/complaints",
        json={"customer_id": "no-such-customer", "channel": "web", "category": "delivery", "subject": "Late"},
    )
    assert unknown.status_code == 422
    assert fields_of(unknown) == ["body.customer_id"]
    bad_status = await move(gw, cid, "archived")
    assert bad_status.status_code == 422
    assert fields_of(bad_status) == ["body.status"]
    authority = await gw.post(
        f"{API}/complaints/{cid}/assign", json={"owner_id": "sup-3", "owner_authority_minor": 100}
    )
    assert authority.status_code == 422
    assert fields_of(authority) == ["body.owner_authority_currency"]

    current = await gw.get(f"{API}/complaints/{cid}")
    stale = await gw.post(
        f"{API}/complaints/{cid}/assign",
        json={"owner_id": "sup-3"},
        headers={"If-Match": f'"{current.json()["version"] - 1}"'},
    )
    assert stale.status_code == 412
    fresh = await gw.post(
        f"{API}/complaints/{cid}/assign",
        json={"owner_id": "sup-3"},
        headers={"If-Match": current.headers["ETag"]},
    )
    assert fresh.status_code == 200
    assert fresh.json()["owner_id"] == "sup-3"
    after = (await gw.get(f"{API}/complaints/{cid}")).json()
    assert [e["kind"] for e in after["events"]] == ["opened", "status_changed", "assigned"]
    assert (await gw.get(f"{API}/complaints/no-such-complaint")).status_code == 404


async def test_reopening_keeps_the_original_resolution_due(
    gw: httpx.AsyncClient, platform: Platform, seen: list[EventPayload]
) -> None:
    ana = await customer(gw, {"given_name": "Ana", "family_name": "Díaz", "email": "diaz@example.es"})
    opened = await open_complaint(gw, ana)
    cid = opened["id"]
    assert (await move(gw, cid, "resolved")).status_code == 200
    reopened = await move(gw, cid, "reopened", note="The refund never arrived.")
    assert reopened.status_code == 200
    body = reopened.json()
    assert (body["status"], body["resolved_at"], body["reopen_count"]) == ("reopened", None, 1)
    assert body["next_due_at"] == opened["resolution_due"]
    assert body["first_response_at"] is not None  # the resolution had answered the customer
    assert (await move(gw, cid, "resolved")).status_code == 200
    assert (await move(gw, cid, "closed", customer_agreed=True)).status_code == 200
    again = await move(gw, cid, "reopened")
    assert again.status_code == 200
    assert (again.json()["closed_at"], again.json()["reopen_count"]) == (None, 2)
    await platform.drain()
    assert [(e.to_status, e.open, e.reopen_count) for e in of_type(seen, ComplaintStatusChanged)][-1] == (
        "reopened",
        True,
        2,
    )


async def test_messages_are_kept_and_the_first_reply_acknowledges(
    gw: httpx.AsyncClient, platform: Platform, seen: list[EventPayload]
) -> None:
    ana = await customer(gw, {"given_name": "Ana", "family_name": "Gil", "email": "gil@example.es"})
    cid = (await open_complaint(gw, ana))["id"]
    inbound = await gw.post(
        f"{API}/complaints/{cid}/messages",
        json={"direction": "inbound", "channel": "phone", "text": "Any news?"},
    )
    assert inbound.status_code == 201, inbound.text
    assert inbound.json()["status"] == "opened"
    assert inbound.json()["answered"] is False
    reply = await gw.post(
        f"{API}/complaints/{cid}/messages",
        json={"direction": "outbound", "text": "Refund on its way.", "author_id": "agent-17"},
    )
    assert reply.status_code == 201
    body = reply.json()
    assert (body["status"], body["answered"]) == ("acknowledged", True)
    assert [(e["kind"], e["direction"], e["channel"], e["text"]) for e in body["events"][1:]] == [
        ("message", "inbound", "phone", "Any news?"),
        ("message", "outbound", "email", "Refund on its way."),
        ("status_changed", None, None, None),
    ]
    timeline = (await gw.get(f"{API}/customers/{ana}/timeline", params={"kind": "complaint"})).json()
    assert sorted(i["direction"] for i in timeline["items"]) == ["inbound", "inbound", "outbound"]
    await platform.drain()
    assert [(e.to_status, e.answered, e.changed_by) for e in of_type(seen, ComplaintStatusChanged)] == [
        ("acknowledged", True, "agent-17")
    ]


async def test_the_sla_watch_escalates_each_breach_exactly_once(
    gw: httpx.AsyncClient, platform: Platform, seen: list[EventPayload]
) -> None:
    ana = await customer(gw, {"given_name": "Ana", "family_name": "Sanz", "email": "sanz@example.es"})
    urgent = (await open_complaint(gw, ana, priority="urgent", opened_at=ago(days=2)))["id"]  # 1 h / 24 h
    normal = (await open_complaint(gw, ana, priority="normal", opened_at=ago(days=2)))["id"]  # 24 h / 7 d
    answered = (await open_complaint(gw, ana, priority="urgent", opened_at=ago(hours=2)))["id"]
    fresh = (await open_complaint(gw, ana, priority="urgent"))["id"]
    assert (await move(gw, answered, "acknowledged")).status_code == 200  # late, but answered

    # Two watches at once (as two replicas would run): each breach is claimed by one of them.
    first, second = await asyncio.gather(
        gw.post(f"{API}/complaints/sla-scan"), gw.post(f"{API}/complaints/sla-scan")
    )
    assert first.status_code == second.status_code == 200
    escalated = first.json()["escalated"] + second.json()["escalated"]
    assert sorted((e["complaint_id"], e["target"]) for e in escalated) == sorted(
        [(urgent, "first_response"), (urgent, "resolution"), (normal, "first_response")]
    )
    again = await gw.post(f"{API}/complaints/sla-scan")
    assert again.json()["escalated"] == []

    state = (await gw.get(f"{API}/complaints/{urgent}")).json()
    assert (state["first_response_breached"], state["resolution_breached"], state["escalation_level"]) == (
        True,
        True,
        2,
    )
    assert sorted(e["details"]["target"] for e in state["events"] if e["kind"] == "escalated") == [
        "first_response",
        "resolution",
    ]
    assert state["overdue"] is True
    for quiet in (answered, fresh):
        assert (await gw.get(f"{API}/complaints/{quiet}")).json()["escalation_level"] == 0

    await platform.drain()
    breaches = of_type(seen, ComplaintSlaBreached)
    assert sorted((b.complaint_id, b.target, b.answered) for b in breaches) == sorted(
        [(urgent, "first_response", False), (urgent, "resolution", False), (normal, "first_response", False)]
    )
    assert {b.customer_id for b in breaches} == {ana}

    # Answering after the breach does not undo it, and nothing is escalated twice.
    assert (await move(gw, normal, "acknowledged")).status_code == 200
    assert (await gw.post(f"{API}/complaints/sla-scan")).json()["escalated"] == []
    await platform.drain()
    assert len(of_type(seen, ComplaintSlaBreached)) == 3


async def test_the_queue_puts_overdue_first_then_the_nearest_due(gw: httpx.AsyncClient) -> None:
    ana = await customer(gw, {"given_name": "Ana", "family_name": "Vega", "email": "vega@example.es"})
    normal = (await open_complaint(gw, ana, priority="normal"))["id"]  # due in 24 h
    urgent = (await open_complaint(gw, ana, priority="urgent", owner_id="agent-9"))["id"]  # due in 1 h
    late = (await open_complaint(gw, ana, priority="high", opened_at=ago(hours=5)))["id"]  # 1 h overdue
    later = (await open_complaint(gw, ana, priority="high", opened_at=ago(hours=6)))["id"]  # 2 h overdue
    done = (await open_complaint(gw, ana, priority="urgent"))["id"]
    assert (await move(gw, done, "resolved")).status_code == 200

    queue = (await gw.get(f"{API}/complaints")).json()
    assert [c["id"] for c in queue["items"]] == [later, late, urgent, normal, done]
    assert [c["overdue"] for c in queue["items"]] == [True, True, False, False, False]

    pages: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await gw.get(f"{API}/complaints", params=params)).json()
        pages.extend(c["id"] for c in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == [later, late, urgent, normal, done]

    overdue = (await gw.get(f"{API}/complaints", params={"overdue": "true"})).json()
    assert [c["id"] for c in overdue["items"]] == [later, late]
    mine = (await gw.get(f"{API}/complaints", params={"owner_id": "agent-9"})).json()
    assert [c["id"] for c in mine["items"]] == [urgent]
    settled = (
        await gw.get(f"{API}/complaints", params=[("status", "resolved"), ("status", "closed")])
    ).json()
    assert [c["id"] for c in settled["items"]] == [done]
    bad = await gw.get(f"{API}/complaints", params={"cursor": "not-a-cursor"})
    assert bad.status_code == 422
    assert fields_of(bad) == ["query.cursor"]


async def test_policies_are_editable_and_apply_to_new_complaints(gw: httpx.AsyncClient) -> None:
    policies = (await gw.get(f"{API}/sla-policies")).json()
    assert len(policies) == 12 * 4
    chat_urgent = next(p for p in policies if (p["channel"], p["priority"]) == ("chat", "urgent"))
    assert (chat_urgent["first_response_minutes"], chat_urgent["resolution_minutes"]) == (60, 1440)
    assert chat_urgent["source"] == "default"
    put = await gw.put(
        f"{API}/sla-policies/chat/urgent", json={"first_response_minutes": 15, "resolution_minutes": 240}
    )
    assert put.status_code == 200, put.text
    assert put.json()["source"] == "custom"
    backwards = await gw.put(
        f"{API}/sla-policies/chat/urgent", json={"first_response_minutes": 60, "resolution_minutes": 30}
    )
    assert backwards.status_code == 422
    assert fields_of(backwards) == ["body.resolution_minutes"]
    unknown = await gw.put(
        f"{API}/sla-policies/pigeon/urgent", json={"first_response_minutes": 1, "resolution_minutes": 2}
    )
    assert unknown.status_code == 422
    assert fields_of(unknown) == ["path.channel"]

    ana = await customer(gw, {"given_name": "Ana", "family_name": "Mora", "email": "mora@example.es"})
    opened = await open_complaint(gw, ana, channel="chat", priority="urgent")
    assert at(opened["first_response_due"]) - at(opened["opened_at"]) == timedelta(minutes=15)
    assert at(opened["resolution_due"]) - at(opened["opened_at"]) == timedelta(minutes=240)


async def test_the_sla_report_per_channel_and_priority(gw: httpx.AsyncClient) -> None:
    ana = await customer(gw, {"given_name": "Ana", "family_name": "Cruz", "email": "cruz@example.es"})
    quick = (await open_complaint(gw, ana, priority="urgent", opened_at=ago(minutes=30)))["id"]
    assert (await move(gw, quick, "resolved")).status_code == 200  # answered and resolved in ~30 min
    await open_complaint(gw, ana, priority="urgent", opened_at=ago(hours=3))  # never answered: overdue
    await open_complaint(gw, ana, priority="normal", channel="phone")  # young, nothing decided yet

    report = (await gw.get(f"{API}/complaints/sla-report")).json()
    rows = {(r["channel"], r["priority"]): r for r in report["rows"]}
    assert set(rows) == {("email", "urgent"), ("phone", "normal")}
    urgent = rows[("email", "urgent")]
    assert (urgent["opened"], urgent["answered"], urgent["resolved"], urgent["open_overdue_now"]) == (
        2,
        1,
        1,
        1,
    )
    assert urgent["answered_within_target_pct"] == 50.0  # one in time, one past due unanswered
    assert urgent["resolved_within_target_pct"] == 100.0  # the other's resolution is not due yet
    assert 29 <= urgent["median_first_response_minutes"] <= 32
    young = rows[("phone", "normal")]
    assert (young["answered_within_target_pct"], young["median_first_response_minutes"]) == (None, None)
    assert report["total"]["opened"] == 3

    empty = (await gw.get(f"{API}/complaints/sla-report", params={"until": ago(days=40)})).json()
    # Nothing opened then; what is overdue now is counted whatever its age.
    assert [(r["channel"], r["priority"], r["opened"], r["open_overdue_now"]) for r in empty["rows"]] == [
        ("email", "urgent", 0, 1)
    ]
    assert empty["total"]["opened"] == 0
    naive = await gw.get(f"{API}/complaints/sla-report", params={"since": "2026-01-01T00:00:00"})
    assert naive.status_code == 422
    assert fields_of(naive) == ["query.since"]


async def test_a_merge_moves_complaints_to_the_survivor(gw: httpx.AsyncClient, platform: Platform) -> None:
    a = await customer(gw, {"given_name": "Lena", "family_name": "Müller", "email": "lena@example.de"})
    b = await customer(gw, {"given_name": "Helga", "family_name": "Schulz", "phone": "+49 151 23456789"})
    cid = (await open_complaint(gw, b))["id"]
    assert (
        await gw.post(f"{API}/complaints/{cid}/messages", json={"direction": "inbound", "text": "Hello?"})
    ).status_code == 201

    merged = await gw.post(
        f"/api/identity/customers/{a}/merge", json={"other_id": b, "reason": "same person"}
    )
    assert merged.status_code == 200, merged.text
    await platform.drain()

    assert (await gw.get(f"{API}/complaints/{cid}")).json()["customer_id"] == a
    assert [c["id"] for c in (await gw.get(f"{API}/customers/{a}/complaints")).json()] == [cid]
    assert [c["id"] for c in (await gw.get(f"{API}/customers/{b}/complaints")).json()] == [cid]
    assert [
        c["id"] for c in (await gw.get(f"{API}/complaints", params={"customer_id": b})).json()["items"]
    ] == [cid]
    late = await open_complaint(gw, b, idempotency_key="late-1")
    assert late["customer_id"] == a
    runtime = platform.runtimes["interactions"]
    async with runtime.sessions() as session:
        owners = set(await session.scalars(select(Complaint.customer_id)))
    assert owners == {a}
    assert (await gw.get(f"{API}/customers/nobody/complaints")).status_code == 404

    # Erasure overwrites what the customer said and keeps the facts; no new messages after it.
    assert (await gw.delete(f"/api/identity/customers/{a}")).status_code == 204
    await platform.drain()
    erased = (await gw.get(f"{API}/complaints/{cid}")).json()
    assert erased["subject"] == "[erased]"
    assert [e["text"] for e in erased["events"]] == [None, None]
    assert (erased["status"], erased["priority"]) == ("opened", "high")
    gone = await gw.post(f"{API}/complaints/{cid}/messages", json={"direction": "outbound", "text": "Hi"})
    assert gone.status_code == 410


async def test_opening_is_idempotent(
    gw: httpx.AsyncClient, platform: Platform, seen: list[EventPayload]
) -> None:
    ana = await customer(gw, {"given_name": "Ana", "family_name": "Ortiz", "email": "ortiz@example.es"})
    body = {
        "customer_id": ana,
        "channel": "web",
        "category": "delivery",
        "subject": "Parcel lost",
        "source_system": "helpdesk",
        "idempotency_key": "ticket-1",
    }
    first = await gw.post(f"{API}/complaints", json=body)
    repeat = await gw.post(f"{API}/complaints", json=body)
    assert (first.status_code, repeat.status_code) == (201, 200)
    assert first.json()["id"] == repeat.json()["id"]
    other_system = await gw.post(f"{API}/complaints", json={**body, "source_system": "web"})
    assert other_system.status_code == 201
    assert other_system.json()["id"] != first.json()["id"]

    runtime = platform.runtimes["interactions"]
    async with runtime.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Complaint)) == 2
    timeline = (await gw.get(f"{API}/customers/{ana}/timeline", params={"kind": "complaint"})).json()
    assert len(timeline["items"]) == 2
    await platform.drain()
    assert len(of_type(seen, ComplaintOpened)) == 2


def overdue_complaint(customer_id: str, opened_at: datetime) -> Complaint:
    """An urgent complaint opened at `opened_at`, never answered (1 h / 24 h targets)."""
    return Complaint(
        id=str(uuid.uuid4()),
        customer_id=customer_id,
        origin_customer_id=customer_id,
        channel="phone",
        priority="urgent",
        category="billing",
        subject="Charged twice",
        status="opened",
        opened_at=opened_at,
        first_response_due=opened_at + timedelta(hours=1),
        resolution_due=opened_at + timedelta(hours=24),
        next_due_at=opened_at + timedelta(hours=1),
        first_response_breached=False,
        resolution_breached=False,
        escalation_level=0,
        reopen_count=0,
        last_seq=0,
        source_system="test",
        interaction_id=str(uuid.uuid4()),
        updated_at=opened_at,
    )


async def test_replicas_racing_for_a_breach_on_postgresql_escalate_it_once(pg_database: str) -> None:
    """Two SLA watches on one PostgreSQL database: the UPDATE claims the breach, so the second replica
    waits for the first one's row lock, then finds the breach taken — one escalation, one event."""
    await upgrade(pg_database, MIGRATIONS)
    engine = create_engine(pg_database, pool_size=4)
    replicas = UnitOfWorkFactory(session_factory(engine), MESSAGING, source="/crm/interactions")
    now = datetime.now(UTC)
    try:
        async with replicas() as uow:
            contested = overdue_complaint("c-1", now - timedelta(hours=2))
            many = [overdue_complaint(f"c-{i}", now - timedelta(days=2)) for i in range(2, 42)]
            uow.session.add_all([contested, *many])
            await uow.commit()

        async def second_replica() -> object:
            async with replicas() as b:
                won = await sla.claim(b, SlaTarget.FIRST_RESPONSE, contested.id, now)
                await b.commit()
                return won

        async with replicas() as a:
            assert await sla.claim(a, SlaTarget.FIRST_RESPONSE, contested.id, now) is not None
            racing = asyncio.create_task(second_replica())
            await asyncio.sleep(0.3)
            assert not racing.done()  # blocked on the first replica's row lock
            await a.commit()
        assert await racing is None

        # Two whole scans at once over 40 complaints overdue on both targets (and the contested one's
        # resolution, not due yet): each breach escalated by exactly one of them.
        first, second = await asyncio.gather(sla.scan(replicas, now=now), sla.scan(replicas, now=now))
        claimed = sorted((e.complaint_id, e.target) for e in first + second)
        assert claimed == sorted((c.id, t.value) for c in many for t in SlaTarget)

        async with replicas() as uow:
            outbox = MESSAGING.outbox
            types = list(await uow.session.scalars(select(outbox.c.type)))
            levels = dict((await uow.session.execute(select(Complaint.id, Complaint.escalation_level))).all())
        assert len([t for t in types if "complaint_sla_breached" in t]) == 1 + 2 * len(many)
        assert levels[contested.id] == 1
        assert {levels[c.id] for c in many} == {2}
    finally:
        await engine.dispose()
