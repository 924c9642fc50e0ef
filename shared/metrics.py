"""Prometheus metrics shared by every service (one registry per process)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

HTTP_REQUESTS = Counter(
    "crm_http_requests_total", "HTTP requests handled", ["service", "method", "route", "status"]
)
HTTP_LATENCY = Histogram(
    "crm_http_request_duration_seconds",
    "HTTP request latency",
    ["service", "method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
EVENTS_PUBLISHED = Counter(
    "crm_events_published_total", "Events relayed from the outbox", ["service", "topic"]
)
EVENTS_HANDLED = Counter("crm_events_handled_total", "Events handled by a consumer", ["group", "type"])
HTTP_SHED = Counter(
    "crm_http_shed_total",
    "Requests refused with 503 at once because the app had `max_in_flight` requests in progress",
    ["service"],
)
BATCH_ISOLATION_FALLBACKS = Counter(
    "crm_consumer_batch_isolation_fallbacks_total",
    "Event batches handled again one savepoint per event after a handler failed",
    ["group"],
)
DEAD_LETTERS = Counter("crm_dead_letters_total", "Events sent to the dead-letter store", ["group", "type"])
OUTBOX_BACKLOG = Gauge("crm_outbox_backlog", "Outbox rows not yet relayed", ["service"])
CONSUMER_LAG = Gauge("crm_consumer_lag", "Records behind the partition end", ["group", "topic", "partition"])
