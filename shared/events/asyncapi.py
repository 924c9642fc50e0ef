"""The event catalogue as an AsyncAPI 3.0 document, generated from the declared payloads.

Every `EventPayload` subclass is one message (its JSON Schema from pydantic, its CloudEvents type,
version and the topic it travels on); every topic is one channel, with the services that publish on
it. Messages use the Kafka binary binding of CloudEvents: the envelope's attributes travel as `ce_*`
headers and the payload is the record's value; the record key is the subject (a customer id).
"""

from __future__ import annotations

import importlib
from typing import Any

from shared.events.envelope import registered_events, registered_topics

CONTRACT_MODULES = (
    "shared.contracts.identity",
    "shared.contracts.interactions",
    "shared.contracts.loyalty",
    "shared.contracts.segmentation",
    "shared.contracts.segmentation_value",
)

_HEADERS = {
    "type": "object",
    "description": "CloudEvents 1.0 attributes, Kafka binary content mode",
    "properties": {
        "ce_specversion": {"type": "string", "const": "1.0"},
        "ce_id": {"type": "string", "description": "Unique per event: consumers deduplicate on it"},
        "ce_source": {"type": "string", "description": "The publishing service, e.g. /crm/identity"},
        "ce_type": {"type": "string", "description": "The versioned event type"},
        "ce_subject": {"type": "string", "description": "The customer id (also the record key)"},
        "ce_time": {"type": "string", "format": "date-time"},
        "ce_dataschema": {"type": "string", "format": "uri"},
        "ce_requestid": {"type": "string", "description": "The HTTP request that caused the event"},
        "ce_traceparent": {
            "type": "string",
            "description": "W3C trace context of the span that wrote the event (CloudEvents tracing)",
        },
        "ce_tracestate": {"type": "string", "description": "W3C tracestate that goes with ce_traceparent"},
        "traceparent": {"type": "string", "description": "The same trace context as a plain W3C header"},
        "tracestate": {"type": "string", "description": "The same tracestate as a plain W3C header"},
        "content-type": {"type": "string", "const": "application/json"},
    },
    "required": ["ce_specversion", "ce_id", "ce_source", "ce_type", "ce_time"],
}


def _load_contracts() -> None:
    for name in CONTRACT_MODULES:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError:
            continue


def _key(name: str) -> str:
    return name.replace(".", "_")


def document(version: str = "1.0.0", servers: dict[str, Any] | None = None) -> dict[str, Any]:
    """The AsyncAPI 3.0 document of every event the platform publishes."""
    _load_contracts()
    events = registered_events()
    topics = registered_topics()
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    schemas: dict[str, Any] = {}
    for topic in sorted(topics.values(), key=lambda t: t.name):
        channels[_key(topic.name)] = {
            "address": topic.name,
            "description": topic.description,
            "messages": {},
            "bindings": {"kafka": {"topic": topic.name, "bindingVersion": "0.5.0"}},
        }
    for full_type, cls in sorted(events.items()):
        key = _key(full_type)
        schema = cls.model_json_schema(ref_template="#/components/schemas/{model}", mode="serialization")
        for name, definition in schema.pop("$defs", {}).items():
            schemas.setdefault(name, definition)
        schemas[key] = schema
        doc = (cls.__doc__ or "").strip()
        messages[key] = {
            "name": full_type,
            "title": cls.__name__,
            "summary": doc.split("\n\n")[0].replace("\n", " ") if doc else full_type,
            "description": doc,
            "contentType": "application/json",
            "headers": _HEADERS,
            "payload": {"$ref": f"#/components/schemas/{key}"},
            "bindings": {
                "kafka": {
                    "key": {"type": "string", "description": f"The `{cls.subject_field}`"},
                    "bindingVersion": "0.5.0",
                }
            },
            "x-cloudevents-type": full_type,
            "x-version": cls.version,
            "x-dataschema": cls.dataschema(),
        }
        channel = _key(cls.topic.name)
        channels[channel]["messages"][key] = {"$ref": f"#/components/messages/{key}"}
        operations[f"publish_{key}"] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{channel}"},
            "summary": f"The {cls.topic.owner} service publishes {full_type}",
            "messages": [{"$ref": f"#/channels/{channel}/messages/{key}"}],
        }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "CRM platform events",
            "version": version,
            "description": __doc__,
        },
        "defaultContentType": "application/json",
        "servers": servers
        or {"kafka": {"host": "127.0.0.1:9092", "protocol": "kafka", "description": "make up / make test"}},
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": schemas},
    }
