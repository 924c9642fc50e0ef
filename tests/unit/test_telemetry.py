"""OpenTelemetry tracing: one trace from the gateway through a service, its outbox and the bus to the
consumers of other services (and theirs), with the trace context kept in the stored CloudEvent."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.trace import SpanKind, StatusCode

from services.platform import Platform, build_platform
from shared import telemetry
from shared.contracts.identity import CustomerRegistered
from shared.events.envelope import CloudEvent, EventPayload, new_event
from shared.events.kafka_binding import from_kafka, to_kafka
from shared.messaging.bus import EventBus, InProcessBus, OutboundMessage, StoredDeadLetter
from shared.messaging.consumer import Delivery, EventConsumer
from shared.messaging.relay import OutboxRelay, _stored_event
from shared.uow import UnitOfWork
from tests.support.auth import auth_gateway, auth_platform, authed
from tests.support.testbed import Side, make_consumer, write_note

PURCHASE = {
    "currency": "EUR",
    "channel": "store",
    "lines": [{"sku": "SKU-1", "category": "shoes", "quantity": 2, "unit_price_minor": 4999}],
}
TRACE_ID = 0x4BF92F3577B34DA6A3CE929D0E0E4736
PARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Tracing on (`CRM_OTEL_EXPORTER=memory`) for everything built in the test; the shared exporter."""
    monkeypatch.setenv("CRM_OTEL_EXPORTER", "memory")
    telemetry.reset()
    yield telemetry.memory_exporter()
    telemetry.reset()


@pytest.fixture
def tracing_off(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.delenv("CRM_OTEL_EXPORTER", raising=False)
    telemetry.reset()
    yield telemetry.memory_exporter()
    telemetry.reset()


def service_of(span: ReadableSpan) -> str:
    return str(span.resource.attributes["service.name"])


def in_trace(spans: Sequence[ReadableSpan], trace_id: int) -> list[ReadableSpan]:
    return [s for s in spans if s.context is not None and s.context.trace_id == trace_id]


def spy_on(platform: Platform, payload: type[EventPayload]) -> list[CloudEvent]:
    """Subscribe an extra consumer group to the platform's bus that records the envelopes it gets."""
    seen: list[CloudEvent] = []
    spy = EventConsumer("crm-test-spy", platform.runtimes["identity"].uow)

    @spy.on(payload)
    async def record(_uow: UnitOfWork, _payload: Any, event: CloudEvent) -> None:
        seen.append(event)

    platform.bus.subscribe(spy)
    return seen


class CapturingBus(EventBus):
    def __init__(self) -> None:
        super().__init__()
        self.published: list[OutboundMessage] = []

    async def publish(self, messages: Sequence[OutboundMessage]) -> None:
        self.published.extend(messages)

    async def dead_letters(
        self, group: str | None = None, *, include_replayed: bool = False
    ) -> list[StoredDeadLetter]:
        return []

    async def replay(self, group: str | None = None, refs: Sequence[str] | None = None) -> int:
        return 0


# -- (1) one trace: gateway → interactions → outbox → bus → loyalty & segmentation → next hop -------


@pytest.mark.auth
async def test_a_purchase_through_the_gateway_is_one_trace_into_every_consumer(
    tmp_path: Path, spans: Any
) -> None:
    platform = auth_platform(tmp_path)
    app = auth_gateway(platform, tmp_path)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway") as client,
    ):
        await authed(client)
        registered = await client.post(
            "/api/identity/customers", json={"given_name": "Ana", "family_name": "Ruiz", "email": "a@x.org"}
        )
        assert registered.status_code == 201, registered.text
        customer_id = registered.json()["customer"]["id"]
        await platform.drain()  # the customer is a loyalty member before the purchase
        spans.clear()

        response = await client.post(
            "/api/interactions/purchases", json={**PURCHASE, "customer_id": customer_id, "external_id": "o-1"}
        )
        assert response.status_code == 201, response.text
        await platform.drain()
        finished = list(spans.get_finished_spans())

    request_id = response.headers["x-request-id"]
    [root] = [
        s
        for s in finished
        if service_of(s) == "crm-gateway"
        and s.kind is SpanKind.SERVER
        and s.attributes is not None
        and s.attributes.get("crm.request_id") == request_id
    ]
    assert root.parent is None  # the client sent no traceparent: the gateway starts the trace
    assert root.context is not None
    trace = in_trace(finished, root.context.trace_id)
    by_id = {s.context.span_id: s for s in trace if s.context is not None}

    def parent_of(span: ReadableSpan) -> ReadableSpan:
        assert span.parent is not None, span.name
        return by_id[span.parent.span_id]

    # The gateway's upstream call is a CLIENT span; the interactions service continues it.
    [served] = [s for s in trace if service_of(s) == "crm-interactions" and s.kind is SpanKind.SERVER]
    assert served.name == "POST /purchases"
    upstream_call = parent_of(served)
    assert (service_of(upstream_call), upstream_call.kind) == ("crm-gateway", SpanKind.CLIENT)
    assert parent_of(upstream_call) is root

    # Relayed from interactions' outbox, handled by loyalty and segmentation: children of the request.
    consumed = [s for s in trace if s.kind is SpanKind.CONSUMER]
    purchase_handlers = {
        service_of(s): s
        for s in consumed
        if s.attributes is not None
        and str(s.attributes["cloudevents.event_type"]).startswith("crm.interactions.purchase_recorded")
    }
    assert {"crm-loyalty", "crm-segmentation"} <= set(purchase_handlers)
    for handler in purchase_handlers.values():
        assert parent_of(handler) is served
        assert handler.status.status_code is not StatusCode.ERROR
    published = [s for s in trace if s.kind is SpanKind.PRODUCER and service_of(s) == "crm-interactions"]
    assert published
    assert all(parent_of(s) is served for s in published)

    # The loyalty handler's own events (points earned) go on in the same trace to the next consumer.
    next_hop = [s for s in consumed if s.parent is not None and by_id.get(s.parent.span_id) is not None]
    assert any(parent_of(s) is purchase_handlers["crm-loyalty"] for s in next_hop), [
        (service_of(s), s.name) for s in consumed
    ]


# -- (2) the trace context survives the outbox, the bus and the Kafka binding -------------------------


async def test_traceparent_and_tracestate_survive_the_stored_outbox_envelope(
    producer: Side, consumer_side: Side, note_class: type[EventPayload], spans: Any
) -> None:
    tracer = TracerProvider().get_tracer("test")
    incoming = telemetry.parent_context(PARENT, "vendor=abc")
    with tracer.start_as_current_span("request", context=incoming) as span:
        await write_note(producer, note_class, "c1", 5)
        expected, state = telemetry.current_trace_headers()
    assert expected == f"00-{TRACE_ID:032x}-{span.get_span_context().span_id:016x}-01"
    assert state == "vendor=abc"

    bus = CapturingBus()
    await OutboxRelay(name="producer", engine=producer.engine, tables=producer.messaging, bus=bus).drain()
    [message] = bus.published
    assert (message.event.traceparent, message.event.tracestate) == (expected, "vendor=abc")

    # Kafka (binary mode): `ce_traceparent` plus the plain W3C header; read back either way.
    _key, value, headers = to_kafka(message.event)
    assert ("ce_traceparent", expected.encode()) in headers
    assert ("traceparent", expected.encode()) in headers
    assert from_kafka(value, headers).traceparent == expected
    plain_only = [(k, v) for k, v in headers if not k.startswith("ce_trace")]
    assert from_kafka(value, plain_only).tracestate == "vendor=abc"

    # The consumer span of the group that handles it is a child of the span that wrote the event.
    telemetry.configure("g1", "memory")
    await EventBusRoundTrip.deliver(consumer_side, note_class, [message])
    [handled] = [s for s in spans.get_finished_spans() if s.kind is SpanKind.CONSUMER]
    assert handled.context is not None
    assert handled.parent is not None
    assert handled.context.trace_id == TRACE_ID
    assert handled.parent.span_id == span.get_span_context().span_id
    assert service_of(handled) == "crm-g1"


class EventBusRoundTrip:
    @staticmethod
    async def deliver(side: Side, note_class: type[EventPayload], messages: list[OutboundMessage]) -> None:
        bus = InProcessBus()
        bus.subscribe(make_consumer(side, note_class, "g1"))
        await bus.publish(messages)


async def test_envelopes_stored_before_tracing_still_load_and_start_their_own_trace(
    consumer_side: Side, note_class: type[EventPayload], spans: Any
) -> None:
    old = {
        "specversion": "1.0",
        "id": "e-1",
        "source": "/crm/old",
        "type": note_class.full_type(),
        "subject": "c9",
        "time": "2025-01-01T00:00:00+00:00",
        "datacontenttype": "application/json",
        "dataschema": None,
        "data": {"note_id": "n", "customer_id": "c9", "amount": 3, "poison": False},
        "requestid": None,
    }
    stored = _stored_event(orjson.dumps(old).decode())
    validated = CloudEvent.model_validate(old)
    assert stored.traceparent is None
    assert validated.traceparent is None
    assert validated.tracestate is None
    telemetry.configure("g1", "memory")
    await EventBusRoundTrip.deliver(
        consumer_side, note_class, [OutboundMessage(topic=note_class.topic.name, event=validated)]
    )
    assert await consumer_side.totals_by_subject() == {"c9": (3, 1)}
    [handled] = [s for s in spans.get_finished_spans() if s.kind is SpanKind.CONSUMER]
    assert handled.parent is None  # no context to continue: a trace of its own


async def test_a_dead_lettered_event_marks_its_consumer_span_as_an_error(
    producer: Side, consumer_side: Side, note_class: type[EventPayload], spans: Any
) -> None:
    telemetry.configure("g1", "memory")
    telemetry.configure("producer", "memory")
    bus = InProcessBus()
    bus.subscribe(make_consumer(consumer_side, note_class, "g1"))
    with TracerProvider().get_tracer("test").start_as_current_span("request"):
        await write_note(producer, note_class, "c1", 5, poison=True)
    await OutboxRelay(name="producer", engine=producer.engine, tables=producer.messaging, bus=bus).drain()
    [handled] = [s for s in spans.get_finished_spans() if s.kind is SpanKind.CONSUMER]
    assert handled.status.status_code is StatusCode.ERROR
    [published] = [s for s in spans.get_finished_spans() if s.kind is SpanKind.PRODUCER]
    assert service_of(published) == "crm-producer"
    assert handled.parent is not None
    assert published.parent is not None
    assert handled.parent.span_id == published.parent.span_id  # siblings under the writing span


async def test_a_run_of_events_is_one_span_linked_to_every_event_it_handled(
    consumer_side: Side, note_class: type[EventPayload], spans: Any
) -> None:
    """A batch handler's span continues the first event's trace and links the others' (one span per
    run, as OpenTelemetry's messaging conventions describe batch processing)."""
    telemetry.configure("runs", "memory")
    consumer = EventConsumer("crm-runs", consumer_side.uow)
    seen: list[int] = []

    @consumer.on_many(note_class)
    async def many(_uow: UnitOfWork, payloads: list[Any], _events: list[CloudEvent]) -> None:
        seen.append(len(payloads))

    parents = [f"00-{i:032x}-{i:016x}-01" for i in (1, 2, 3)]
    deliveries = []
    for i, traceparent in enumerate(parents):
        payload = note_class(note_id=f"n-{i}", customer_id="c1", amount=i)
        event = new_event(payload, source="/test").model_copy(update={"traceparent": traceparent})
        deliveries.append(Delivery(event=event, topic=note_class.topic.name))
    assert await consumer.handle_batch(deliveries) == []
    assert seen == [3]
    [handled] = [s for s in spans.get_finished_spans() if s.kind is SpanKind.CONSUMER]
    assert handled.context is not None
    assert handled.context.trace_id == 1
    assert handled.attributes is not None
    assert handled.attributes["messaging.batch.message_count"] == 3
    assert sorted(link.context.trace_id for link in handled.links) == [2, 3]


# -- (3) exporter none: nothing recorded, nothing propagated -----------------------------------------


@pytest.fixture
async def untraced_platform(tmp_path: Path, tracing_off: Any) -> tuple[Platform, Any]:
    platform = build_platform(var_dir=tmp_path, auth_enabled=False)
    return platform, tracing_off


async def test_with_exporter_none_no_span_is_recorded_or_propagated(
    untraced_platform: tuple[Platform, Any],
) -> None:
    platform, exporter = untraced_platform
    seen = spy_on(platform, CustomerRegistered)
    app = platform.gateway()
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway") as client,
    ):
        response = await client.post(
            "/api/identity/customers",
            json={"given_name": "Ana", "family_name": "Ruiz", "email": "a@x.org"},
            headers={"traceparent": PARENT},
        )
        assert response.status_code == 201, response.text
        await platform.drain()

    assert [e.type for e in seen] == [CustomerRegistered.full_type()]
    assert seen[0].traceparent is None  # the incoming trace is not continued: tracing is off
    assert not telemetry.telemetry("gateway").enabled
    assert not any(telemetry.telemetry(name).enabled for name in platform.runtimes)
    assert exporter.get_finished_spans() == ()


def test_unknown_exporter_is_refused() -> None:
    with pytest.raises(ValueError, match="exporter"):
        telemetry.configure("x", "jaeger")
