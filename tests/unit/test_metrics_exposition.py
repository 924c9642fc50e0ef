"""What `/metrics` shows: request rate, errors and latency, consumer lag, outbox backlog (kept current
while the service runs) and dead letters (the in-process bus's too), on a service and on the gateway."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import httpx
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from services.platform import build_platform
from shared.events.envelope import EventPayload
from shared.messaging.bus import InProcessBus
from shared.messaging.relay import OutboxRelay
from tests.support.testbed import Side, make_consumer, make_event_class, write_note

FAMILIES = {
    "crm_http_requests": "counter",  # rate, and errors by `status`
    "crm_http_request_duration_seconds": "histogram",
    "crm_consumer_lag": "gauge",
    "crm_outbox_backlog": "gauge",
    "crm_dead_letters": "counter",
    "crm_events_published": "counter",
    "crm_events_handled": "counter",
}


async def scrape(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get("/metrics")
    assert response.status_code == 200, response.text
    return {family.name: family for family in text_string_to_metric_families(response.text)}


def value(families: dict[str, Any], family: str, sample: str, **labels: str) -> float | None:
    for s in families[family].samples:
        if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items()):
            return float(s.value)
    return None


async def test_a_service_and_the_gateway_expose_every_family(tmp_path: Path) -> None:
    platform = build_platform(var_dir=tmp_path, auth_enabled=False)
    loyalty = platform.runtimes["loyalty"]
    loyalty.metrics_interval = 0.05
    app = platform.gateway()
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway") as gateway,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=loyalty.app), base_url="http://loyalty"
        ) as service,
    ):
        assert (await service.get("/health")).status_code == 200
        assert (await service.get("/no-such-route")).status_code == 404
        families = await scrape(service)
        for name, kind in FAMILIES.items():
            assert name in families, name
            assert families[name].type == kind, name
        assert value(
            families, "crm_http_requests", "crm_http_requests_total", service="loyalty", status="404"
        )
        assert value(
            families,
            "crm_http_request_duration_seconds",
            "crm_http_request_duration_seconds_count",
            service="loyalty",
            route="/health",
        )
        # Dead letters read 0 from the start for every event the service consumes.
        assert value(families, "crm_dead_letters", "crm_dead_letters_total", group="crm-loyalty") == 0

        # The backlog gauge follows the outbox while the service runs (no readiness probe needed).
        await loyalty.relay.stop()
        note = make_event_class(uuid.uuid4().hex[:12])
        async with loyalty.uow() as uow:
            for amount in (1, 2, 3):
                await uow.publish(note(note_id=str(amount), customer_id="c1", amount=amount))
            await uow.commit()
        await eventually_backlog(service, 3)
        await loyalty.relay.drain()
        await eventually_backlog(service, 0)

        # The gateway answers /metrics too (its own requests counted under service="gateway").
        assert (await gateway.get("/health")).status_code == 200
        families = await scrape(gateway)
        assert value(families, "crm_http_requests", "crm_http_requests_total", service="gateway")


async def eventually_backlog(client: httpx.AsyncClient, expected: int) -> None:
    async with asyncio.timeout(5):
        while value(await scrape(client), "crm_outbox_backlog", "crm_outbox_backlog", service="loyalty") != (
            expected
        ):
            await asyncio.sleep(0.02)


async def test_dead_letters_of_the_in_process_bus_are_counted(
    producer: Side, consumer_side: Side, note_class: type[EventPayload]
) -> None:
    group = f"g-{uuid.uuid4().hex[:8]}"
    labels = {"group": group, "type": note_class.full_type()}
    bus = InProcessBus()
    bus.subscribe(make_consumer(consumer_side, note_class, group))
    await write_note(producer, note_class, "c1", 5, poison=True)
    await write_note(producer, note_class, "c2", 7)
    await OutboxRelay(name="producer", engine=producer.engine, tables=producer.messaging, bus=bus).drain()
    assert REGISTRY.get_sample_value("crm_dead_letters_total", labels) == 1
    assert REGISTRY.get_sample_value("crm_events_handled_total", labels) == 1
    assert (
        REGISTRY.get_sample_value(
            "crm_events_published_total", {"service": "producer", "topic": note_class.topic.name}
        )
        == 2
    )
