"""The combined OpenAPI document: every service's operations under `/api/<service>`, in one place.

Built from the services' own documents (so it never drifts from the code): paths are prefixed,
operation ids and tags qualified by service, and component schemas merged — a schema that two
services define identically (the problem document, say) appears once; one that differs is renamed
`<service>.<Name>` with every reference to it rewritten.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

REF_PREFIX = "#/components/schemas/"


def _rewrite_refs(node: Any, renames: Mapping[str, str]) -> Any:
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str) and value.startswith(REF_PREFIX):
                name = value[len(REF_PREFIX) :]
                out[key] = REF_PREFIX + renames.get(name, name)
            else:
                out[key] = _rewrite_refs(value, renames)
        return out
    if isinstance(node, list):
        return [_rewrite_refs(item, renames) for item in node]
    return node


def merge_openapi(
    specs: Mapping[str, dict[str, Any]], *, own: dict[str, Any], title: str, version: str, description: str
) -> dict[str, Any]:
    """Merge service documents (`{service: spec}`) and the gateway's own into one OpenAPI 3.1 document."""
    merged: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version, "description": description},
        "paths": dict(own.get("paths", {})),
        "components": {"schemas": dict(own.get("components", {}).get("schemas", {}))},
        "tags": list(own.get("tags", [])),
    }
    if "securitySchemes" in own.get("components", {}):
        merged["components"]["securitySchemes"] = own["components"]["securitySchemes"]
    schemas: dict[str, Any] = merged["components"]["schemas"]
    for service, original in sorted(specs.items()):
        spec = copy.deepcopy(original)
        renames: dict[str, str] = {}
        for name, schema in spec.get("components", {}).get("schemas", {}).items():
            if name in schemas and schemas[name] != schema:
                renames[name] = f"{service}.{name}"
        spec = _rewrite_refs(spec, renames)
        for name, schema in spec.get("components", {}).get("schemas", {}).items():
            schemas[renames.get(name, name)] = schema
        merged["tags"].append({"name": service, "description": f"The {service} service"})
        for path, item in spec.get("paths", {}).items():
            if path in ("/health", "/ready", "/metrics"):
                continue
            for operation in item.values():
                if not isinstance(operation, dict):
                    continue
                operation["tags"] = [service, *[f"{service}: {t}" for t in operation.get("tags", [])]]
                if "operationId" in operation:
                    operation["operationId"] = f"{service}__{operation['operationId']}"
            merged["paths"][f"/api/{service}{path}"] = item
    return merged
