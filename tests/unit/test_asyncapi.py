"""The AsyncAPI catalogue documents every declared event, on its topic, with its payload schema."""

from __future__ import annotations

from shared.events.asyncapi import document
from shared.events.envelope import registered_events


def test_every_event_is_a_message_on_its_topic_with_its_schema() -> None:
    doc = document()
    assert doc["asyncapi"] == "3.0.0"
    events = registered_events()
    assert len(events) >= 14
    messages = doc["components"]["messages"]
    schemas = doc["components"]["schemas"]
    for full_type, cls in events.items():
        key = full_type.replace(".", "_")
        message = messages[key]
        assert message["name"] == full_type
        assert message["x-version"] == cls.version
        schema = schemas[key]
        assert set(cls.model_fields) == set(schema["properties"]), full_type
        channel = doc["channels"][cls.topic.name.replace(".", "_")]
        assert channel["address"] == cls.topic.name
        assert key in channel["messages"]
        operation = doc["operations"][f"publish_{key}"]
        assert operation["action"] == "send"


def test_references_resolve() -> None:
    doc = document()

    def refs(node: object) -> list[str]:
        if isinstance(node, dict):
            found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
            return found + [r for value in node.values() for r in refs(value)]
        if isinstance(node, list):
            return [r for value in node for r in refs(value)]
        return []

    for ref in refs(doc):
        target: object = doc
        for part in ref.removeprefix("#/").split("/"):
            assert isinstance(target, dict), ref
            assert part in target, ref
            target = target[part]
