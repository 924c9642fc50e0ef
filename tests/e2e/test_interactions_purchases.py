"""Purchases, their payment status, returns and refunds, through the gateway (embedded platform)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.platform import Platform, build_platform
from shared.contracts.interactions import PurchaseRefunded
from shared.events.envelope import CloudEvent
from shared.messaging.bus import OutboundMessage

NOW = datetime.now(UTC).replace(microsecond=0)
ORDER = {
    "source_system": "pos",
    "channel": "store",
    "occurred_at": (NOW - timedelta(days=3)).isoformat(),
    "currency": "EUR",
    "lines": [
        {"sku": "SHOE-1", "category": "shoes", "quantity": 2, "unit_price_minor": 4999},
        {"sku": "SOCK-1", "category": "socks", "quantity": 3, "unit_price_minor": 500},
    ],
}  # total 2 × 49.99 + 3 × 5.00 = 114.98 EUR


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


async def purchase(gw: httpx.AsyncClient, customer_id: str, **extra: Any) -> dict[str, Any]:
    response = await gw.post(
        "/api/interactions/purchases", json={**ORDER, "customer_id": customer_id, **extra}
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


async def refund(gw: httpx.AsyncClient, purchase_id: str, body: dict[str, Any]) -> httpx.Response:
    return await gw.post(f"/api/interactions/purchases/{purchase_id}/refunds", json=body)


def problem_fields(response: httpx.Response) -> list[str]:
    return [e["field"] for e in response.json().get("errors", [])]


@pytest.fixture
async def ana(gw: httpx.AsyncClient) -> str:
    return await customer(gw, {"given_name": "Ana", "family_name": "García", "email": "ana@example.com"})


class TestRecordingPurchases:
    async def test_a_purchase_is_paid_by_default_and_shows_nothing_refunded(
        self, gw: httpx.AsyncClient, ana: str, platform: Platform, published: list[CloudEvent]
    ) -> None:
        order = await purchase(gw, ana, external_id="POS-1")
        assert order["payment_status"] == "paid"
        assert order["total_minor"] == 11498
        assert (order["refunded_total_minor"], order["refundable_minor"], order["refunds"]) == (0, 11498, [])
        assert [line["returned_quantity"] for line in order["lines"]] == [0, 0]
        [event] = await events_of(platform, published, "crm.interactions.purchase_recorded.v1")
        assert event["payment_status"] == "paid"

    async def test_a_negative_quantity_is_refused_naming_the_line(
        self, gw: httpx.AsyncClient, ana: str
    ) -> None:
        lines = [
            {"sku": "A", "quantity": 1, "unit_price_minor": 100},
            {"sku": "B", "quantity": -1, "unit_price_minor": 1},
        ]
        response = await gw.post(
            "/api/interactions/purchases", json={**ORDER, "customer_id": ana, "lines": lines}
        )
        assert response.status_code == 422
        assert problem_fields(response) == ["body.lines.1.quantity"]

    async def test_an_unknown_customer_is_refused_and_nothing_is_written(
        self, gw: httpx.AsyncClient, ana: str
    ) -> None:
        response = await gw.post(
            "/api/interactions/purchases", json={**ORDER, "customer_id": "no-such-customer"}
        )
        assert response.status_code == 422
        assert problem_fields(response) == ["body.customer_id"]
        timeline = (await gw.get(f"/api/interactions/customers/{ana}/timeline")).json()
        assert timeline["items"] == []

    async def test_a_purchase_cannot_be_recorded_as_refunded(self, gw: httpx.AsyncClient, ana: str) -> None:
        response = await gw.post(
            "/api/interactions/purchases", json={**ORDER, "customer_id": ana, "payment_status": "refunded"}
        )
        assert response.status_code == 422
        assert problem_fields(response) == ["body.payment_status"]


class TestPaymentStatus:
    async def test_pending_then_authorized_then_paid(self, gw: httpx.AsyncClient, ana: str) -> None:
        order = await purchase(gw, ana, payment_status="pending")
        url = f"/api/interactions/purchases/{order['id']}/payment-status"
        for target in ("authorized", "paid", "paid"):  # the same status again changes nothing
            response = await gw.post(url, json={"status": target})
            assert response.status_code == 200, response.text
            assert response.json()["payment_status"] == target
        read = await gw.get(f"/api/interactions/purchases/{order['id']}")
        assert read.json()["payment_status"] == "paid"

    async def test_a_failed_payment_can_be_retried(self, gw: httpx.AsyncClient, ana: str) -> None:
        order = await purchase(gw, ana, payment_status="failed")
        url = f"/api/interactions/purchases/{order['id']}/payment-status"
        assert (await gw.post(url, json={"status": "pending"})).json()["payment_status"] == "pending"
        assert (await gw.post(url, json={"status": "paid"})).json()["payment_status"] == "paid"

    @pytest.mark.parametrize(
        ("initial", "target"),
        [("paid", "pending"), ("paid", "failed"), ("paid", "refunded"), ("pending", "partially_refunded")],
    )
    async def test_forbidden_changes_are_409_naming_the_status(
        self, gw: httpx.AsyncClient, ana: str, initial: str, target: str
    ) -> None:
        order = await purchase(gw, ana, payment_status=initial)
        response = await gw.post(
            f"/api/interactions/purchases/{order['id']}/payment-status", json={"status": target}
        )
        assert response.status_code == 409, response.text
        assert problem_fields(response) == ["body.status"]
        read = await gw.get(f"/api/interactions/purchases/{order['id']}")
        assert read.json()["payment_status"] == initial

    async def test_a_cancelled_order_stays_cancelled(self, gw: httpx.AsyncClient, ana: str) -> None:
        order = await purchase(gw, ana, payment_status="pending")
        url = f"/api/interactions/purchases/{order['id']}/payment-status"
        assert (await gw.post(url, json={"status": "cancelled"})).status_code == 200
        assert (await gw.post(url, json={"status": "paid"})).status_code == 409

    async def test_an_unknown_purchase_is_404(self, gw: httpx.AsyncClient) -> None:
        response = await gw.post("/api/interactions/purchases/nope/payment-status", json={"status": "paid"})
        assert response.status_code == 404


class TestRefunds:
    async def test_a_partial_return_by_lines_refunds_the_price_paid(
        self, gw: httpx.AsyncClient, ana: str, platform: Platform, published: list[CloudEvent]
    ) -> None:
        order = await purchase(gw, ana, external_id="POS-2")
        response = await refund(
            gw,
            order["id"],
            {
                "lines": [{"line_no": 1, "quantity": 1}, {"line_no": 2, "quantity": 2}],
                "reason": "wrong size",
                "source_system": "pos",
                "idempotency_key": "RET-1",
            },
        )
        assert response.status_code == 201, response.text
        body = response.json()
        assert body["refund"]["amount_minor"] == 4999 + 2 * 500
        assert body["refund"]["currency"] == "EUR"
        assert body["refund"]["lines"] == [{"line_no": 1, "quantity": 1}, {"line_no": 2, "quantity": 2}]
        after = body["purchase"]
        assert after["payment_status"] == "partially_refunded"
        assert after["refunded_total_minor"] == 5999
        assert after["refundable_minor"] == 11498 - 5999
        assert [line["returned_quantity"] for line in after["lines"]] == [1, 2]

        read = (await gw.get(f"/api/interactions/purchases/{order['id']}")).json()
        assert read["refunded_total_minor"] == 5999
        assert [r["id"] for r in read["refunds"]] == [body["refund"]["id"]]
        listed = (await gw.get(f"/api/interactions/customers/{ana}/purchases")).json()
        assert listed[0]["refunded_total_minor"] == 5999
        assert listed[0]["refunds"][0]["reason"] == "wrong size"

        [event] = await events_of(platform, published, "crm.interactions.purchase_refunded.v1")
        refunded = PurchaseRefunded.model_validate(event)
        assert refunded.refund_id == body["refund"]["id"]
        assert refunded.purchase_id == order["id"]
        assert refunded.customer_id == ana
        assert (refunded.amount_minor, refunded.purchase_total_minor, refunded.refunded_total_minor) == (
            5999,
            11498,
            5999,
        )
        assert [(line.sku, line.quantity, line.unit_price_minor) for line in refunded.lines] == [
            ("SHOE-1", 1, 4999),
            ("SOCK-1", 2, 500),
        ]
        assert refunded.reason == "wrong size"
        assert refunded.payment_status == "partially_refunded"

    async def test_the_refund_is_on_the_timeline(self, gw: httpx.AsyncClient, ana: str) -> None:
        order = await purchase(gw, ana)
        created = await refund(
            gw,
            order["id"],
            {"lines": [{"line_no": 1, "quantity": 1}], "reason": "damaged", "idempotency_key": "r"},
        )
        items = (await gw.get(f"/api/interactions/customers/{ana}/timeline?kind=refund")).json()["items"]
        assert len(items) == 1
        [row] = items
        assert (row["kind"], row["subject_type"], row["subject_id"]) == (
            "refund",
            "refund",
            created.json()["refund"]["id"],
        )
        assert row["summary"] == "Refund of 49.99 EUR, 1 item(s) returned (damaged)"
        assert row["channel"] == "store"

    async def test_a_refund_by_amount_and_then_the_rest(self, gw: httpx.AsyncClient, ana: str) -> None:
        order = await purchase(gw, ana)
        goodwill = await refund(
            gw,
            order["id"],
            {"amount_minor": 1000, "currency": "EUR", "reason": "late delivery", "idempotency_key": "gw-1"},
        )
        assert goodwill.status_code == 201, goodwill.text
        assert goodwill.json()["refund"]["lines"] == []
        assert goodwill.json()["purchase"]["payment_status"] == "partially_refunded"
        rest = await refund(
            gw,
            order["id"],
            {
                "amount_minor": 10498,
                "currency": "EUR",
                "reason": "order cancelled",
                "idempotency_key": "gw-2",
            },
        )
        assert rest.status_code == 201, rest.text
        assert rest.json()["purchase"]["payment_status"] == "refunded"
        assert rest.json()["purchase"]["refundable_minor"] == 0
        # Goods can still come back, without money: nothing is left to refund.
        goods = await refund(
            gw,
            order["id"],
            {
                "lines": [{"line_no": 2, "quantity": 3}],
                "amount_minor": 0,
                "currency": "EUR",
                "reason": "returned after refund",
                "idempotency_key": "gw-3",
            },
        )
        assert goods.status_code == 201, goods.text
        assert goods.json()["purchase"]["lines"][1]["returned_quantity"] == 3

    async def test_returning_more_than_bought_minus_returned_is_422_naming_the_line(
        self, gw: httpx.AsyncClient, ana: str
    ) -> None:
        order = await purchase(gw, ana)
        first = await refund(
            gw, order["id"], {"lines": [{"line_no": 2, "quantity": 2}], "reason": "x", "idempotency_key": "a"}
        )
        assert first.status_code == 201
        response = await refund(
            gw,
            order["id"],
            {
                "lines": [{"line_no": 1, "quantity": 1}, {"line_no": 2, "quantity": 2}],
                "reason": "x",
                "idempotency_key": "b",
            },
        )
        assert response.status_code == 422
        assert problem_fields(response) == ["body.lines.1.quantity"]
        assert "at most 1" in response.json()["errors"][0]["message"]

    async def test_an_unknown_line_is_422_naming_it(self, gw: httpx.AsyncClient, ana: str) -> None:
        order = await purchase(gw, ana)
        response = await refund(
            gw, order["id"], {"lines": [{"line_no": 9, "quantity": 1}], "reason": "x", "idempotency_key": "a"}
        )
        assert response.status_code == 422
        assert problem_fields(response) == ["body.lines.0.line_no"]

    async def test_a_negative_return_quantity_is_422_naming_it(self, gw: httpx.AsyncClient, ana: str) -> None:
        order = await purchase(gw, ana)
        response = await refund(
            gw,
            order["id"],
            {"lines": [{"line_no": 1, "quantity": -1}], "reason": "x", "idempotency_key": "a"},
        )
        assert response.status_code == 422
        assert problem_fields(response) == ["body.lines.0.quantity"]

    async def test_refunding_more_than_the_order_is_422_and_writes_nothing(
        self, gw: httpx.AsyncClient, ana: str, platform: Platform, published: list[CloudEvent]
    ) -> None:
        order = await purchase(gw, ana)
        response = await refund(
            gw,
            order["id"],
            {
                "lines": [{"line_no": 1, "quantity": 1}],
                "amount_minor": 11499,
                "currency": "EUR",
                "reason": "x",
                "idempotency_key": "too-much",
            },
        )
        assert response.status_code == 422
        assert problem_fields(response) == ["body.amount_minor"]
        read = (await gw.get(f"/api/interactions/purchases/{order['id']}")).json()
        assert (read["refunds"], read["refunded_total_minor"], read["payment_status"]) == ([], 0, "paid")
        assert read["lines"][0]["returned_quantity"] == 0
        timeline = (await gw.get(f"/api/interactions/customers/{ana}/timeline?kind=refund")).json()
        assert timeline["items"] == []
        assert await events_of(platform, published, "crm.interactions.purchase_refunded.v1") == []

    async def test_goods_worth_more_than_what_is_left_need_an_amount(
        self, gw: httpx.AsyncClient, ana: str
    ) -> None:
        order = await purchase(gw, ana)
        assert (
            await refund(
                gw,
                order["id"],
                {"amount_minor": 10000, "currency": "EUR", "reason": "x", "idempotency_key": "a"},
            )
        ).status_code == 201
        response = await refund(
            gw, order["id"], {"lines": [{"line_no": 1, "quantity": 1}], "reason": "x", "idempotency_key": "b"}
        )
        assert response.status_code == 422
        assert problem_fields(response) == ["body.lines"]

    async def test_another_currency_is_422_naming_the_currency(self, gw: httpx.AsyncClient, ana: str) -> None:
        order = await purchase(gw, ana)
        response = await refund(
            gw,
            order["id"],
            {"amount_minor": 1000, "currency": "USD", "reason": "x", "idempotency_key": "usd"},
        )
        assert response.status_code == 422
        assert problem_fields(response) == ["body.currency"]
        assert "EUR" in response.json()["errors"][0]["message"]

    async def test_an_amount_without_its_currency_is_422(self, gw: httpx.AsyncClient, ana: str) -> None:
        order = await purchase(gw, ana)
        response = await refund(
            gw, order["id"], {"amount_minor": 1000, "reason": "x", "idempotency_key": "k"}
        )
        assert response.status_code == 422
        assert problem_fields(response) == ["body.currency"]

    async def test_the_same_idempotency_key_returns_the_first_refund(
        self, gw: httpx.AsyncClient, ana: str, platform: Platform, published: list[CloudEvent]
    ) -> None:
        order = await purchase(gw, ana)
        body = {
            "lines": [{"line_no": 1, "quantity": 1}],
            "reason": "x",
            "source_system": "web",
            "idempotency_key": "R-1",
        }
        first = await refund(gw, order["id"], body)
        again = await refund(gw, order["id"], body)
        assert (first.status_code, again.status_code) == (201, 200)
        assert again.json()["refund"]["id"] == first.json()["refund"]["id"]
        assert again.json()["purchase"]["refunded_total_minor"] == 4999
        assert len(await events_of(platform, published, "crm.interactions.purchase_refunded.v1")) == 1
        # The same key from another source system is another refund.
        other = await refund(gw, order["id"], {**body, "source_system": "pos"})
        assert other.status_code == 201
        assert other.json()["purchase"]["refunded_total_minor"] == 2 * 4999

    async def test_a_key_used_for_another_purchase_is_409(self, gw: httpx.AsyncClient, ana: str) -> None:
        one, two = await purchase(gw, ana), await purchase(gw, ana)
        body = {"amount_minor": 100, "currency": "EUR", "reason": "x", "idempotency_key": "K"}
        assert (await refund(gw, one["id"], body)).status_code == 201
        response = await refund(gw, two["id"], body)
        assert response.status_code == 409
        assert problem_fields(response) == ["body.idempotency_key"]

    async def test_a_purchase_never_paid_cannot_be_refunded(self, gw: httpx.AsyncClient, ana: str) -> None:
        order = await purchase(gw, ana, payment_status="pending")
        response = await refund(
            gw, order["id"], {"lines": [{"line_no": 1, "quantity": 1}], "reason": "x", "idempotency_key": "k"}
        )
        assert response.status_code == 409

    async def test_an_unknown_purchase_is_404(self, gw: httpx.AsyncClient) -> None:
        response = await refund(
            gw, "nope", {"amount_minor": 1, "currency": "EUR", "reason": "x", "idempotency_key": "k"}
        )
        assert response.status_code == 404

    async def test_concurrent_refunds_never_refund_more_than_the_total(
        self, gw: httpx.AsyncClient, ana: str
    ) -> None:
        order = await purchase(gw, ana)
        bodies = [
            {"amount_minor": 4000, "currency": "EUR", "reason": "x", "idempotency_key": f"c-{i}"}
            for i in range(5)
        ]
        responses = await asyncio.gather(*(refund(gw, order["id"], body) for body in bodies))
        codes = sorted(r.status_code for r in responses)
        assert codes == [201, 201, 422, 422, 422]  # 2 × 40.00 fit in 114.98, a third does not
        read = (await gw.get(f"/api/interactions/purchases/{order['id']}")).json()
        assert read["refunded_total_minor"] == 8000
        assert len(read["refunds"]) == 2


async def test_a_merge_moves_refunds_to_the_survivor(gw: httpx.AsyncClient, platform: Platform) -> None:
    lena = await customer(gw, {"given_name": "Lena", "family_name": "Müller", "email": "lena@example.de"})
    helga = await customer(gw, {"given_name": "Helga", "family_name": "Schulz", "phone": "+49 151 23456789"})
    order = await purchase(gw, helga)
    created = await refund(
        gw, order["id"], {"lines": [{"line_no": 1, "quantity": 1}], "reason": "x", "idempotency_key": "m-1"}
    )
    assert created.json()["refund"]["customer_id"] == helga
    merged = await gw.post(
        f"/api/identity/customers/{lena}/merge", json={"other_id": helga, "reason": "same person"}
    )
    assert merged.status_code == 200, merged.text
    await platform.drain()
    read = (await gw.get(f"/api/interactions/purchases/{order['id']}")).json()
    assert read["customer_id"] == lena
    assert read["refunds"][0]["customer_id"] == lena
    timeline = (await gw.get(f"/api/interactions/customers/{lena}/timeline?kind=refund")).json()["items"]
    assert [row["subject_id"] for row in timeline] == [created.json()["refund"]["id"]]
    # A refund recorded after the merge belongs to the survivor, and its event says so.
    later = await refund(
        gw, order["id"], {"lines": [{"line_no": 1, "quantity": 1}], "reason": "x", "idempotency_key": "m-2"}
    )
    assert later.json()["refund"]["customer_id"] == lena


async def test_concurrent_refunds_on_postgres_are_serialised_by_the_row_lock(
    tmp_path: Path, pg_database: str
) -> None:
    """On PostgreSQL transactions run side by side: only `SELECT … FOR UPDATE` on the purchase keeps
    two refunds from both seeing the same refunded total."""
    from services.interactions import service
    from services.interactions.app import build
    from services.interactions.directory import remember
    from services.interactions.schemas import PurchaseCreate, RefundCreate
    from services.interactions.settings import load_settings
    from shared.messaging.bus import InProcessBus
    from shared.migrations import upgrade

    runtime = build(load_settings(var_dir=tmp_path, database_url=pg_database), InProcessBus())
    try:
        await upgrade(pg_database, runtime.migrations)
        async with runtime.uow() as uow:
            await remember(uow.session, "c-1")
            await uow.commit()
        order, _ = await service.record_purchase(
            runtime.uow(),
            runtime.app.state.directory,
            PurchaseCreate.model_validate({**ORDER, "customer_id": "c-1"}),
        )

        async def attempt(i: int) -> str:
            body = RefundCreate(amount_minor=3000, currency="EUR", reason="x", idempotency_key=f"pg-{i}")
            try:
                await service.record_refund(runtime.uow(), order.id, body)
            except Exception as exc:
                return type(exc).__name__
            return "refunded"

        outcomes = sorted(await asyncio.gather(*(attempt(i) for i in range(8))))
        assert outcomes == ["InvalidInput"] * 5 + ["refunded"] * 3  # 3 × 30.00 fit in 114.98
        after = await service.get_purchase(runtime.uow(), order.id)
        assert after.refunded_total_minor == 9000
        assert len(after.refunds) == 3
    finally:
        await runtime.engine.dispose()
