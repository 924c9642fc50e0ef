"""Gateway parts: the combined OpenAPI document and the circuit breaker."""

from __future__ import annotations

import time

from services.gateway.openapi import merge_openapi
from services.gateway.upstreams import CircuitBreaker


def spec(schema_title: str) -> dict[str, object]:
    return {
        "paths": {
            "/things": {
                "get": {
                    "operationId": "list_things",
                    "tags": ["things"],
                    "responses": {
                        "200": {
                            "content": {
                                "application/json": {"schema": {"$ref": "#/components/schemas/Thing"}}
                            }
                        }
                    },
                }
            },
            "/health": {"get": {}},
        },
        "components": {
            "schemas": {
                "Thing": {"title": schema_title, "type": "object"},
                "Problem": {"type": "object", "title": "Problem"},
            }
        },
    }


class TestMergeOpenapi:
    def test_paths_are_prefixed_and_operations_qualified(self) -> None:
        merged = merge_openapi({"a": spec("Thing")}, own={}, title="t", version="1", description="d")
        assert "/api/a/things" in merged["paths"]
        assert "/api/a/health" not in merged["paths"]
        op = merged["paths"]["/api/a/things"]["get"]
        assert op["operationId"] == "a__list_things"
        assert op["tags"] == ["a", "a: things"]

    def test_identical_schemas_are_shared_and_conflicting_ones_renamed(self) -> None:
        merged = merge_openapi(
            {"a": spec("Thing"), "b": spec("Other thing")}, own={}, title="t", version="1", description="d"
        )
        schemas = merged["components"]["schemas"]
        assert set(schemas) == {"Thing", "b.Thing", "Problem"}
        ref = merged["paths"]["/api/b/things"]["get"]["responses"]["200"]["content"]["application/json"][
            "schema"
        ]["$ref"]
        assert ref == "#/components/schemas/b.Thing"
        assert merged["openapi"] == "3.1.0"


class TestCircuitBreaker:
    def test_opens_after_consecutive_failures_and_half_opens_later(self) -> None:
        breaker = CircuitBreaker(failures_to_open=3, reset_seconds=0.05)
        for _ in range(3):
            assert breaker.allow()
            breaker.failure()
        assert not breaker.allow()
        assert breaker.state == "open"
        time.sleep(0.06)
        assert breaker.allow()  # one trial
        assert not breaker.allow()  # only one
        breaker.success()
        assert breaker.state == "closed"
        assert breaker.allow()
