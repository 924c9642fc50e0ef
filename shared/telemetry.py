"""OpenTelemetry tracing: one trace follows a request across HTTP calls and events.

Each service (and the gateway) has its own `TracerProvider`, with its own `service.name`
resource (`crm-<service>`), configured from its settings:

- `CRM_OTEL_EXPORTER` (or `CRM_<SERVICE>_OTEL_EXPORTER`): `none` (default: no provider at all,
  the middleware and transports below pass straight through), `console`, `otlp` (OTLP/HTTP to
  `CRM_OTEL_ENDPOINT`) or `memory` (one process-wide in-memory exporter: tests and benchmarks);
- `CRM_OTEL_SAMPLE_RATIO`: the share of new traces recorded (parent-based).

Providers are kept in a registry by service name rather than installed as OpenTelemetry's global
provider: embedded mode runs every service in one process, and each keeps its own identity.

Where spans come from:

- `TracingMiddleware` (installed by `shared.http.create_app`): a SERVER span per HTTP request
  (opentelemetry-instrumentation-asgi), continuing an incoming W3C `traceparent`, named after the
  matched route;
- `trace_client`: CLIENT spans and `traceparent` injection on an httpx client's requests
  (opentelemetry-instrumentation-httpx) — the gateway's upstreams, interactions → identity;
- events: `shared.events.envelope.new_event` stamps the current span context into the CloudEvent
  (`traceparent`/`tracestate`, the CloudEvents distributed-tracing extension); the outbox relay
  makes a PRODUCER span per relayed event and `EventConsumer` a CONSUMER span per handled event,
  both children of that context — and events a handler publishes carry the consumer span on.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import IO, Any

import httpx
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.settings import PlatformSettings

EXPORTERS = ("none", "console", "otlp", "memory")
INSTRUMENTATION = "crm.platform"
_UNTRACED_PATHS = "/health$,/ready$,/metrics$"
_TRACE_CONTEXT = TraceContextTextMapPropagator()
_NOOP_TRACER: Tracer = trace.NoOpTracer()


@dataclass(frozen=True, slots=True)
class Telemetry:
    """One service's tracing: `provider` is None when tracing is off (`tracer` is then a no-op)."""

    service: str
    exporter: str
    endpoint: str | None
    sample_ratio: float
    provider: Any | None  # opentelemetry.sdk.trace.TracerProvider (the SDK is imported only when used)
    tracer: Tracer

    @property
    def enabled(self) -> bool:
        return self.provider is not None

    def shutdown(self) -> None:
        if self.provider is not None:
            self.provider.shutdown()


_registry: dict[str, Telemetry] = {}
_memory_exporter: Any | None = None
console_stream: IO[str] | None = None
"""Where the console exporter writes (None: standard output). The benchmark points it at /dev/null."""


def memory_exporter() -> Any:
    """The process-wide `InMemorySpanExporter` every `memory` provider writes to (tests, benchmarks)."""
    global _memory_exporter
    if _memory_exporter is None:
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        _memory_exporter = InMemorySpanExporter()
    return _memory_exporter


def _disabled(service: str) -> Telemetry:
    return Telemetry(service, "none", None, 1.0, None, _NOOP_TRACER)


def configure(
    service: str,
    exporter: str = "none",
    *,
    endpoint: str | None = None,
    sample_ratio: float = 1.0,
    environment: str | None = None,
) -> Telemetry:
    """Set up (or replace) a service's tracing. The same configuration again keeps the provider."""
    if exporter not in EXPORTERS:
        raise ValueError(f"unknown OpenTelemetry exporter {exporter!r}: one of {', '.join(EXPORTERS)}")
    current = _registry.get(service)
    wanted = (exporter, endpoint, sample_ratio)
    if current is not None and (current.exporter, current.endpoint, current.sample_ratio) == wanted:
        return current
    if current is not None and current.exporter in ("otlp", "console"):
        current.shutdown()  # flushes its batch; `memory` providers share one exporter, left running
    if exporter == "none":
        telemetry = _disabled(service)
    else:
        provider = _new_provider(service, exporter, endpoint, sample_ratio, environment)
        telemetry = Telemetry(
            service, exporter, endpoint, sample_ratio, provider, provider.get_tracer(INSTRUMENTATION)
        )
    _registry[service] = telemetry
    return telemetry


def configure_from(service: str, settings: PlatformSettings) -> Telemetry:
    """A service's tracing from its settings (`CRM_OTEL_*`, or `CRM_<SERVICE>_OTEL_*`)."""
    return configure(
        service,
        settings.otel_exporter,
        endpoint=settings.otel_endpoint if settings.otel_exporter == "otlp" else None,
        sample_ratio=settings.otel_sample_ratio,
        environment=str(settings.environment),
    )


def telemetry(service: str) -> Telemetry:
    """A service's tracing; one nobody configured follows the platform-wide `CRM_OTEL_*` variables."""
    found = _registry.get(service)
    if found is None:
        try:
            found = configure_from(service, PlatformSettings())
        except ValueError:  # unusable settings are refused at start-up, not in a request's path
            found = _registry[service] = _disabled(service)
    return found


def reset() -> None:
    """Forget every service's tracing (tests): providers are flushed, the memory exporter emptied."""
    for item in _registry.values():
        if item.provider is not None:
            item.provider.force_flush()
    _registry.clear()
    if _memory_exporter is not None:
        _memory_exporter.clear()


def _new_provider(
    service: str, exporter: str, endpoint: str | None, sample_ratio: float, environment: str | None
) -> Any:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SimpleSpanProcessor
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    attributes: dict[str, str] = {"service.name": f"crm-{service}", "service.namespace": "crm"}
    if environment:
        attributes["deployment.environment.name"] = environment
    provider = TracerProvider(
        resource=Resource.create(attributes), sampler=ParentBased(TraceIdRatioBased(sample_ratio))
    )
    processor: SpanProcessor
    if exporter == "memory":
        processor = SimpleSpanProcessor(memory_exporter())
    elif exporter == "console":
        processor = BatchSpanProcessor(ConsoleSpanExporter(out=console_stream or sys.stdout))
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        processor = BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint))
    provider.add_span_processor(processor)
    return provider


# -- events: the CloudEvents distributed-tracing extension ---------------------------------------


def current_trace_headers() -> tuple[str | None, str | None]:
    """The current span's W3C `traceparent` and `tracestate` (None, None outside any span)."""
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None, None
    traceparent = f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"
    return traceparent, (context.trace_state.to_header() or None)


def parent_context(traceparent: str | None, tracestate: str | None = None) -> Context | None:
    """The context a `traceparent` (and `tracestate`) names; None when absent or malformed."""
    if not traceparent:
        return None
    carrier = {"traceparent": traceparent}
    if tracestate:
        carrier["tracestate"] = tracestate
    context = _TRACE_CONTEXT.extract(carrier)
    if not trace.get_current_span(context).get_span_context().is_valid:
        return None
    return context


@contextlib.contextmanager
def event_span(
    service: str,
    name: str,
    *,
    kind: SpanKind,
    traceparent: str | None,
    tracestate: str | None,
    attributes: dict[str, Any],
    links: Sequence[tuple[str | None, str | None]] = (),
) -> Iterator[Span | None]:
    """A span for one event, child of the context it was written in, current inside the block (so
    events published there carry it on). Yields None, at no cost, when the service's tracing is off.

    `links` (traceparent, tracestate pairs): for a span handling several events at once, the other
    events' contexts, linked (OpenTelemetry's way to say "this span also continues those")."""
    tel = _registry.get(service) or telemetry(service)
    if tel.provider is None:
        yield None
        return
    span_links = []
    for link_parent, link_state in links:
        linked = parent_context(link_parent, link_state)
        if linked is not None:
            span_links.append(trace.Link(trace.get_current_span(linked).get_span_context()))
    with tel.tracer.start_as_current_span(
        name,
        context=parent_context(traceparent, tracestate),
        kind=kind,
        attributes=attributes,
        links=span_links,
    ) as span:
        yield span


# -- HTTP ---------------------------------------------------------------------------------------


class TracingMiddleware:
    """Pure ASGI middleware: a SERVER span per HTTP request when the service's tracing is on.

    Looked up per request, so it can be installed when the app is made and configured later; with
    tracing off it is one dictionary look-up and a call through."""

    def __init__(self, app: ASGIApp, *, service: str) -> None:
        self.app = app
        self.service = service
        self._traced: tuple[Any, ASGIApp] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        tel = _registry.get(self.service) or telemetry(self.service)
        if tel.provider is None:
            await self.app(scope, receive, send)
            return
        traced = self._traced
        if traced is None or traced[0] is not tel.provider:
            from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

            traced = (
                tel.provider,
                OpenTelemetryMiddleware(
                    _NameByRoute(self.app),
                    tracer_provider=tel.provider,
                    excluded_urls=_UNTRACED_PATHS,
                    exclude_spans=["receive", "send"],
                ),
            )
            self._traced = traced
        # A server's parent comes from the request's headers alone: in embedded mode the gateway calls
        # the services in its own task, where its client span is current (it would make ours INTERNAL).
        token = otel_context.attach(Context())
        try:
            await traced[1](scope, receive, send)
        finally:
            otel_context.detach(token)


class _NameByRoute:
    """Inside the server span: once routed, name it `METHOD /route/{template}` (not the raw path, whose
    ids would make every name unique) and note the request id."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        span = trace.get_current_span()

        async def send_named(message: Message) -> None:
            if message["type"] == "http.response.start" and span.is_recording():
                path = getattr(scope.get("route"), "path", None)
                if path:
                    span.update_name(f"{scope.get('method', 'GET')} {path}")
                    span.set_attribute("http.route", path)
                for name, value in message.get("headers", ()):
                    if name == b"x-request-id":
                        span.set_attribute("crm.request_id", value.decode("latin-1"))
                        break
            await send(message)

        await self.app(scope, receive, send_named)


class TracingTransport(httpx.AsyncBaseTransport):
    """Wraps a client's transport: with the calling service's tracing on, each request gets a CLIENT
    span and carries `traceparent` (opentelemetry-instrumentation-httpx); off, it calls straight through."""

    def __init__(self, transport: httpx.AsyncBaseTransport, service: str) -> None:
        self.transport = transport
        self.service = service
        self._traced: tuple[Any, httpx.AsyncBaseTransport] | None = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        tel = _registry.get(self.service) or telemetry(self.service)
        if tel.provider is None:
            return await self.transport.handle_async_request(request)
        traced = self._traced
        if traced is None or traced[0] is not tel.provider:
            from opentelemetry.instrumentation.httpx import AsyncOpenTelemetryTransport

            traced = (tel.provider, AsyncOpenTelemetryTransport(self.transport, tracer_provider=tel.provider))
            self._traced = traced
        return await traced[1].handle_async_request(request)

    def untraced(self) -> httpx.AsyncBaseTransport | None:
        """The wrapped transport when the service's tracing is off (calls may go to it directly);
        None when on."""
        tel = _registry.get(self.service) or telemetry(self.service)
        return self.transport if tel.provider is None else None

    async def aclose(self) -> None:
        await self.transport.aclose()


def trace_client(client: httpx.AsyncClient, service: str) -> httpx.AsyncClient:
    """Make `client`'s requests traced as calls by `service` (idempotent); returns the client.

    httpx offers no public way to wrap the transport of a client already made (the instrumentation's
    own `instrument_client` patches the same private attribute)."""
    transport = client._transport
    if not isinstance(transport, TracingTransport):
        client._transport = TracingTransport(transport, service)
    return client


__all__ = [
    "Telemetry",
    "TracingMiddleware",
    "TracingTransport",
    "configure",
    "configure_from",
    "current_trace_headers",
    "event_span",
    "memory_exporter",
    "parent_context",
    "reset",
    "telemetry",
    "trace_client",
]
