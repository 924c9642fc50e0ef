"""CloudEvents Kafka protocol binding, binary content mode.

Attributes travel as `ce_*` headers, the data as the record value (JSON), `content-type` as a
header, and the record key is the subject (the customer id) so per-customer order holds.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson

from shared.events.envelope import CloudEvent

Headers = list[tuple[str, bytes]]

_ATTRIBUTES = (
    "specversion",
    "id",
    "source",
    "type",
    "subject",
    "time",
    "dataschema",
    "requestid",
    "traceparent",
    "tracestate",
)
# The trace context also travels as plain W3C headers, which OpenTelemetry's Kafka instrumentations
# (and tools reading the topics) understand; `ce_traceparent` wins when both are present.
_W3C_HEADERS = ("traceparent", "tracestate")


class MalformedEvent(ValueError):
    """A record that is not a CloudEvent in binary mode: missing attributes or invalid JSON."""


def to_kafka(event: CloudEvent) -> tuple[bytes | None, bytes, Headers]:
    headers: Headers = [("content-type", event.datacontenttype.encode())]
    for name in _ATTRIBUTES:
        value = getattr(event, name)
        if value is None:
            continue
        text = value.isoformat() if isinstance(value, datetime) else str(value)
        headers.append((f"ce_{name}", text.encode()))
    for name in _W3C_HEADERS:
        value = getattr(event, name)
        if value is not None:
            headers.append((name, value.encode()))
    key = event.subject.encode() if event.subject else None
    return key, orjson.dumps(event.data), headers


def from_kafka(value: bytes | None, headers: Sequence[tuple[str, bytes]]) -> CloudEvent:
    attrs: dict[str, Any] = {}
    w3c: dict[str, str] = {}
    content_type = "application/json"
    for name, raw in headers:
        if name == "content-type":
            content_type = raw.decode()
        elif name.startswith("ce_"):
            attrs[name[3:]] = raw.decode()
        elif name in _W3C_HEADERS:
            w3c[name] = raw.decode()
    if "traceparent" not in attrs and "traceparent" in w3c:
        attrs.update(w3c)
    missing = [a for a in ("specversion", "id", "source", "type") if a not in attrs]
    if missing:
        raise MalformedEvent(f"missing CloudEvents headers: {', '.join('ce_' + m for m in missing)}")
    try:
        data = orjson.loads(value) if value else {}
    except orjson.JSONDecodeError as exc:
        raise MalformedEvent(f"record value is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise MalformedEvent("record value must be a JSON object")
    try:
        return CloudEvent(datacontenttype=content_type, data=data, **attrs)
    except ValueError as exc:
        raise MalformedEvent(str(exc)) from exc
