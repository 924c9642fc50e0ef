"""Every public endpoint of every service is documented: a summary, and examples for its request body
(on the body schema, on one of its fields, or on the operation itself)."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import pytest

from shared.messaging.bus import InProcessBus

SERVICES = ("identity", "interactions", "segmentation", "loyalty")


def _has_examples(schema: Any, components: dict[str, Any], seen: set[str]) -> bool:
    if not isinstance(schema, dict):
        return False
    if "examples" in schema or "example" in schema:
        return True
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        if name in seen:
            return False
        seen.add(name)
        return _has_examples(components.get(name, {}), components, seen)
    parts = list(schema.get("properties", {}).values())
    for key in ("anyOf", "allOf", "oneOf"):
        parts += schema.get(key, [])
    if "items" in schema:
        parts.append(schema["items"])
    return any(_has_examples(part, components, seen) for part in parts)


@pytest.mark.parametrize("service", SERVICES)
def test_every_operation_has_a_summary_and_body_examples(service: str, tmp_path: Path) -> None:
    app_module = importlib.import_module(f"services.{service}.app")
    settings = importlib.import_module(f"services.{service}.settings")
    url = f"sqlite+aiosqlite:///{tmp_path / service}.db"
    document = app_module.build(settings.load_settings(database_url=url), InProcessBus()).app.openapi()
    components = document.get("components", {}).get("schemas", {})
    missing_summary: list[str] = []
    missing_examples: list[str] = []
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            name = f"{method.upper()} {path}"
            if not operation.get("summary"):
                missing_summary.append(name)
            content = operation.get("requestBody", {}).get("content", {}).get("application/json")
            if content is None or "examples" in content or "example" in content:
                continue
            if not _has_examples(content.get("schema"), components, set()):
                missing_examples.append(name)
    assert document["paths"], "no operations at all"
    assert missing_summary == [], f"{service}: operations without a summary: {missing_summary}"
    assert missing_examples == [], f"{service}: request bodies without examples: {missing_examples}"
