"""Outbound communications: recorded on the timeline, their delivery history, current status and the
reason of every bounce or return, through the gateway (embedded platform)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from services.platform import Platform, build_platform
from shared.events.envelope import CloudEvent
from shared.messaging.bus import OutboundMessage

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


@pytest.fixture
def published(platform: Platform, monkeypatch: pytest.MonkeyPatch) -> list[CloudEvent]:
    """Every event the platform publishes (as the relay hands them to the bus)."""
    seen: list[CloudEvent] = []
    deliver = platform.bus.publish

    async def capture(messages: Sequence[OutboundMessage]) -> None:
        seen.extend(message.event for message in messages)
        await deliver(messages)

    monkeypatch.setattr(platform.bus, "publish", capture)
    return seen


async def events_of(platform: Platform, published: list[CloudEvent], event_type: str) -> list[dict[str, Any]]:
    """The data of the events of this type published so far (after letting the outboxes drain), once
    each: delivery is at least once, and a relay woken by a commit may race `drain` to the same rows."""
    await platform.drain()
    unique = {event.id: event for event in published if event.type == event_type}
    return [event.data for event in unique.values()]


async def customer(gw: httpx.AsyncClient, body: dict[str, Any]) -> str:
    response = await gw.post("/api/identity/customers", json=body)
    assert response.status_code == 201, response.text
    return str(response.json()["customer"]["id"])


@pytest.fixture
async def ana(gw: httpx.AsyncClient) -> str:
    return await customer(gw, {"given_name": "Ana", "family_name": "García", "email": "ana@example.com"})


def at(minutes: int) -> str:
    return (NOW - timedelta(hours=1) + timedelta(minutes=minutes)).isoformat()


def message(customer_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "customer_id": customer_id,
        "channel": "email",
        "campaign_id": "winter-sale",
        "template_id": "winter-a",
        "subject": "Our winter sale starts today",
        "address": "ana@example.com",
        "sent_at": at(0),
        "source_system": "esp",
        **extra,
    }


async def send(gw: httpx.AsyncClient, body: dict[str, Any]) -> dict[str, Any]:
    response = await gw.post("/api/interactions/communications", json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


async def event(gw: httpx.AsyncClient, communication_id: str, body: dict[str, Any]) -> httpx.Response:
    return await gw.post(f"/api/interactions/communications/{communication_id}/delivery", json=body)


def problem_fields(response: httpx.Response) -> list[str]:
    return [e["field"] for e in response.json().get("errors", [])]


class TestRecording:
    async def test_a_message_sent_is_on_the_timeline_and_published(
        self, gw: httpx.AsyncClient, ana: str, platform: Platform, published: list[CloudEvent]
    ) -> None:
        sent = await send(gw, message(ana, idempotency_key="msg-1"))
        assert (sent["status"], sent["customer_id"], sent["address"]) == ("sent", ana, "ana@example.com")
        assert [d["status"] for d in sent["deliveries"]] == ["sent"]
        timeline = (await gw.get(f"/api/interactions/customers/{ana}/timeline")).json()["items"]
        [row] = timeline
        assert (row["kind"], row["direction"], row["channel"]) == ("communication", "outbound", "email")
        assert (row["subject_type"], row["subject_id"], row["id"]) == (
            "communication",
            sent["id"],
            sent["interaction_id"],
        )
        assert row["summary"] == "E-mail sent (winter-sale)"
        [recorded] = await events_of(platform, published, "crm.interactions.interaction_recorded.v1")
        assert (recorded["kind"], recorded["direction"], recorded["customer_id"]) == (
            "communication",
            "outbound",
            ana,
        )
        assert recorded["interaction_id"] == sent["interaction_id"]
        assert "ana@example.com" not in str(recorded)  # the address stays here

    async def test_the_same_idempotency_key_records_it_once(self, gw: httpx.AsyncClient, ana: str) -> None:
        first = await send(gw, message(ana, idempotency_key="msg-1"))
        again = await gw.post("/api/interactions/communications", json=message(ana, idempotency_key="msg-1"))
        assert again.status_code == 200
        assert again.json()["id"] == first["id"]
        listed = (await gw.get(f"/api/interactions/customers/{ana}/communications")).json()
        assert [c["id"] for c in listed] == [first["id"]]

    async def test_an_unknown_customer_is_422_naming_it(self, gw: httpx.AsyncClient) -> None:
        response = await gw.post("/api/interactions/communications", json=message("nobody"))
        assert response.status_code == 422
        assert problem_fields(response) == ["body.customer_id"]

    async def test_a_shop_counter_is_not_an_outbound_channel(self, gw: httpx.AsyncClient, ana: str) -> None:
        response = await gw.post("/api/interactions/communications", json=message(ana, channel="store"))
        assert response.status_code == 422
        assert problem_fields(response) == ["body.channel"]


class TestDelivery:
    async def test_the_history_is_kept_and_the_status_never_goes_back(
        self, gw: httpx.AsyncClient, ana: str
    ) -> None:
        sent = await send(gw, message(ana, status="queued"))
        for status, minute in (("sent", 1), ("opened", 3), ("delivered", 2), ("clicked", 4)):
            response = await event(gw, sent["id"], {"status": status, "occurred_at": at(minute)})
            assert response.status_code == 201, response.text
        read = (await gw.get(f"/api/interactions/communications/{sent['id']}")).json()
        assert read["status"] == "clicked"
        assert [d["status"] for d in read["deliveries"]] == [
            "queued",
            "sent",
            "delivered",
            "opened",
            "clicked",
        ]
        timeline = (await gw.get(f"/api/interactions/customers/{ana}/timeline")).json()["items"]
        assert timeline[0]["attributes"]["status"] == "clicked"

    async def test_a_late_delivered_does_not_undo_an_open(self, gw: httpx.AsyncClient, ana: str) -> None:
        sent = await send(gw, message(ana))
        await event(gw, sent["id"], {"status": "opened", "occurred_at": at(5)})
        late = await event(gw, sent["id"], {"status": "delivered", "occurred_at": at(1)})
        assert late.json()["status"] == "opened"
        assert len(late.json()["deliveries"]) == 3

    async def test_a_hard_bounce_keeps_its_reason_and_is_final(self, gw: httpx.AsyncClient, ana: str) -> None:
        sent = await send(gw, message(ana))
        bounced = await event(
            gw,
            sent["id"],
            {"status": "bounced", "bounce_type": "hard", "reason": "550 5.1.1 mailbox does not exist"},
        )
        assert bounced.status_code == 201, bounced.text
        body = bounced.json()
        assert (body["status"], body["bounce_type"], body["status_reason"]) == (
            "bounced",
            "hard",
            "550 5.1.1 mailbox does not exist",
        )
        assert body["deliveries"][-1]["reason"] == "550 5.1.1 mailbox does not exist"
        after = await event(gw, sent["id"], {"status": "delivered"})
        assert after.status_code == 409
        assert problem_fields(after) == ["body.status"]
        bounced_list = (
            await gw.get(f"/api/interactions/customers/{ana}/communications?status=bounced")
        ).json()
        assert [c["id"] for c in bounced_list] == [sent["id"]]

    async def test_a_soft_bounce_is_overtaken_by_a_delivery(self, gw: httpx.AsyncClient, ana: str) -> None:
        sent = await send(gw, message(ana))
        soft = await event(
            gw, sent["id"], {"status": "bounced", "bounce_type": "soft", "reason": "mailbox full"}
        )
        assert (soft.json()["status"], soft.json()["bounce_type"]) == ("bounced", "soft")
        delivered = await event(gw, sent["id"], {"status": "delivered"})
        assert delivered.status_code == 201
        body = delivered.json()
        assert (body["status"], body["bounce_type"], body["status_reason"]) == ("delivered", None, None)
        assert [(d["status"], d["reason"]) for d in body["deliveries"]] == [
            ("sent", None),
            ("bounced", "mailbox full"),
            ("delivered", None),
        ]

    async def test_a_bounce_without_a_reason_is_422_naming_the_reason(
        self, gw: httpx.AsyncClient, ana: str
    ) -> None:
        sent = await send(gw, message(ana))
        response = await event(gw, sent["id"], {"status": "bounced", "bounce_type": "hard"})
        assert response.status_code == 422
        assert problem_fields(response) == ["body.reason"]
        without_type = await event(gw, sent["id"], {"status": "bounced", "reason": "no such user"})
        assert problem_fields(without_type) == ["body.bounce_type"]
        read = (await gw.get(f"/api/interactions/communications/{sent['id']}")).json()
        assert (read["status"], len(read["deliveries"])) == ("sent", 1)

    async def test_direct_mail_is_returned_with_a_reason(self, gw: httpx.AsyncClient, ana: str) -> None:
        letter = await send(
            gw, message(ana, channel="direct_mail", address="Calle Mayor 12, 28013 Madrid", subject=None)
        )
        assert (
            await event(gw, letter["id"], {"status": "bounced", "bounce_type": "hard", "reason": "x"})
        ).status_code == 422
        assert problem_fields(await event(gw, letter["id"], {"status": "returned"})) == ["body.reason"]
        returned = await event(gw, letter["id"], {"status": "returned", "reason": "addressee unknown"})
        assert returned.status_code == 201
        assert (returned.json()["status"], returned.json()["status_reason"]) == (
            "returned",
            "addressee unknown",
        )
        opened = await event(gw, letter["id"], {"status": "opened"})
        assert opened.status_code == 422  # nobody can tell whether a letter was opened

    async def test_an_email_is_not_returned(self, gw: httpx.AsyncClient, ana: str) -> None:
        sent = await send(gw, message(ana))
        response = await event(gw, sent["id"], {"status": "returned", "reason": "x"})
        assert response.status_code == 422
        assert problem_fields(response) == ["body.status"]

    async def test_a_bounce_after_an_open_is_409(self, gw: httpx.AsyncClient, ana: str) -> None:
        sent = await send(gw, message(ana))
        await event(gw, sent["id"], {"status": "opened"})
        response = await event(gw, sent["id"], {"status": "bounced", "bounce_type": "soft", "reason": "x"})
        assert response.status_code == 409

    async def test_a_provider_event_redelivered_is_recorded_once(
        self, gw: httpx.AsyncClient, ana: str
    ) -> None:
        sent = await send(gw, message(ana))
        body = {"status": "delivered", "idempotency_key": "evt-9"}
        first, again = await event(gw, sent["id"], body), await event(gw, sent["id"], body)
        assert (first.status_code, again.status_code) == (201, 200)
        assert len(again.json()["deliveries"]) == 2

    async def test_an_unknown_communication_is_404(self, gw: httpx.AsyncClient) -> None:
        assert (await event(gw, "nope", {"status": "delivered"})).status_code == 404
        assert (await gw.get("/api/interactions/communications/nope")).status_code == 404


async def test_a_merge_moves_communications_and_their_history_to_the_survivor(
    gw: httpx.AsyncClient, platform: Platform
) -> None:
    lena = await customer(gw, {"given_name": "Lena", "family_name": "Müller", "email": "lena@example.de"})
    helga = await customer(gw, {"given_name": "Helga", "family_name": "Schulz", "phone": "+49 151 23456789"})
    sms = await send(gw, message(helga, channel="sms", address="+49 151 23456789", subject=None))
    await event(gw, sms["id"], {"status": "delivered"})
    merged = await gw.post(
        f"/api/identity/customers/{lena}/merge", json={"other_id": helga, "reason": "same person"}
    )
    assert merged.status_code == 200, merged.text
    await platform.drain()
    listed = (await gw.get(f"/api/interactions/customers/{lena}/communications")).json()
    assert [(c["id"], c["customer_id"]) for c in listed] == [(sms["id"], lena)]
    # The merged id shows the survivor's communications.
    assert [
        c["id"] for c in (await gw.get(f"/api/interactions/customers/{helga}/communications")).json()
    ] == [sms["id"]]
    from services.interactions.communications.models import DeliveryEventRow

    async with platform.runtimes["interactions"].sessions() as session:
        owners = set(await session.scalars(select(DeliveryEventRow.customer_id)))
    assert owners == {lena}


async def test_erasure_overwrites_the_address_and_the_reasons(
    gw: httpx.AsyncClient, platform: Platform
) -> None:
    ana = await customer(gw, {"given_name": "Ana", "family_name": "García", "email": "ana@example.com"})
    sent = await send(gw, message(ana))
    await event(
        gw,
        sent["id"],
        {"status": "bounced", "bounce_type": "hard", "reason": "550 <ana@example.com> unknown"},
    )
    assert (await gw.delete(f"/api/identity/customers/{ana}")).status_code == 204
    await platform.drain()
    read = (await gw.get(f"/api/interactions/communications/{sent['id']}")).json()
    assert (read["address"], read["subject"], read["status_reason"]) == ("[erased]", None, None)
    assert (read["status"], read["bounce_type"]) == ("bounced", "hard")  # the facts stay
    assert [d["reason"] for d in read["deliveries"]] == [None, None]
