"""The CloudEvents 1.0 envelope and the typed payloads carried in it.

Every event the platform publishes is an `EventPayload` subclass declaring its type (with a
version suffix: `crm.loyalty.points_earned.v1`), its topic (one per event family) and which field
is its subject — the customer id, which is also the Kafka record key, so that all events of one
customer stay in order. Subclasses register themselves; the registry feeds consumers (decoding),
the AsyncAPI document and the JSON schemas served at each event's `dataschema`.
"""

from __future__ import annotations

import builtins
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from shared.context import request_id_var
from shared.telemetry import current_trace_headers

SCHEMA_BASE = "/api/catalog/events/"


@dataclass(frozen=True, slots=True)
class Topic:
    """A Kafka topic holding one family of events (e.g. everything that happens to a purchase)."""

    name: str
    description: str
    owner: str
    partitions: int | None = None  # None: the platform default (CRM_KAFKA_TOPIC_PARTITIONS)


_TOPICS: dict[str, Topic] = {}
_EVENTS: dict[str, type[EventPayload]] = {}


def register_topic(topic: Topic) -> Topic:
    existing = _TOPICS.get(topic.name)
    if existing is not None and existing != topic:
        raise ValueError(f"topic {topic.name} declared twice with different settings")
    _TOPICS[topic.name] = topic
    return topic


def registered_topics() -> dict[str, Topic]:
    return dict(_TOPICS)


class EventPayload(BaseModel):
    """Base of every event's `data`. Subclasses set `event_type`, `version`, `topic`, `subject_field`."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    event_type: ClassVar[str]
    version: ClassVar[int] = 1
    topic: ClassVar[Topic]
    subject_field: ClassVar[str] = "customer_id"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "event_type" in cls.__dict__:
            full = cls.full_type()
            if full in _EVENTS and _EVENTS[full].__qualname__ != cls.__qualname__:
                raise ValueError(f"event type {full} declared twice")
            _EVENTS[full] = cls
            register_topic(cls.topic)

    @classmethod
    def full_type(cls) -> str:
        return f"{cls.event_type}.v{cls.version}"

    @classmethod
    def dataschema(cls) -> str:
        return SCHEMA_BASE + cls.full_type()

    def subject(self) -> str:
        return str(getattr(self, self.subject_field))


PayloadT = TypeVar("PayloadT", bound=EventPayload)


def registered_events() -> dict[str, type[EventPayload]]:
    return dict(_EVENTS)


def event_class(full_type: str) -> type[EventPayload] | None:
    return _EVENTS.get(full_type)


class CloudEvent(BaseModel):
    """A CloudEvents 1.0 event (structured form). Extension attributes: `requestid`, and the
    distributed-tracing extension's `traceparent`/`tracestate` (W3C Trace Context) naming the span
    the event was written in. All optional: envelopes stored before they existed still load."""

    model_config = ConfigDict(frozen=True)

    specversion: Literal["1.0"] = "1.0"
    id: str = Field(default_factory=lambda: str(uuid.uuid4()))
    source: str
    type: str
    subject: str | None = None
    time: datetime = Field(default_factory=lambda: datetime.now(UTC))
    datacontenttype: str = "application/json"
    dataschema: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)
    requestid: str | None = None
    traceparent: str | None = None
    tracestate: str | None = None

    def payload(self, cls: builtins.type[PayloadT]) -> PayloadT:
        """The data as its typed payload (validates it)."""
        return cls.model_validate(self.data)

    def typed(self) -> EventPayload:
        cls = event_class(self.type)
        if cls is None:
            raise UnknownEventType(self.type)
        return cls.model_validate(self.data)


class UnknownEventType(LookupError):
    """An event whose type no code here declares: a consumer cannot handle it."""


def new_event(
    payload: EventPayload,
    *,
    source: str,
    time: datetime | None = None,
    event_id: str | None = None,
    trusted: bool = False,
) -> CloudEvent:
    """Wrap a payload in an envelope, stamped with the current request id and trace context.

    `event_id`: the envelope's id, if the caller drew one already (a random UUID otherwise).
    `trusted`: the payload was built by this process's own code from values of the right types, so
    the envelope's attributes are not validated again: the same envelope, made several times faster
    (bulk paths writing an event per record). A payload made with `model_construct` fits here."""
    traceparent, tracestate = current_trace_headers()
    values: dict[str, Any] = {
        "specversion": "1.0",
        "id": event_id or str(uuid.uuid4()),
        "source": source,
        "type": payload.full_type(),
        "subject": payload.subject(),
        "time": time or datetime.now(UTC),
        "datacontenttype": "application/json",
        "dataschema": payload.dataschema(),
        "data": payload.model_dump(mode="json"),
        "requestid": request_id_var.get(),
        "traceparent": traceparent,
        "tracestate": tracestate,
    }
    if trusted:
        return CloudEvent.model_construct(**values)
    return CloudEvent(**values)
