"""Gateway parts: the combined OpenAPI document, the circuit breaker and the upstream client."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from services.gateway.openapi import merge_openapi
from services.gateway.upstreams import POOL_WAIT_SECONDS, CircuitBreaker, Upstream
from shared.errors import ServiceUnavailable


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


class TestUpstream:
    """A saturated connection pool is a fast 503 that neither retries nor trips the breaker; a call's
    own timeout and retries override the client's (the customer 360's parts pass theirs)."""

    @staticmethod
    def _upstream(handler: Any, *, retries: int = 2) -> Upstream:
        client = httpx.AsyncClient(transport=httpx.MockTransport(handler), base_url="http://svc")
        return Upstream("svc", client, retries=retries, breaker=CircuitBreaker(3, 5.0))

    async def test_no_free_connection_is_a_503_without_retry_or_breaker_failure(self) -> None:
        calls: list[httpx.Request] = []

        def saturated(request: httpx.Request) -> httpx.Response:
            calls.append(request)
            raise httpx.PoolTimeout("no connection available", request=request)

        upstream = self._upstream(saturated)
        with pytest.raises(ServiceUnavailable, match="busy"):
            await upstream.request("GET", "/customers/1")
        assert len(calls) == 1  # not retried, though GET is idempotent
        assert upstream.breaker.failures == 0
        assert upstream.breaker.state == "closed"

    async def test_a_call_can_set_its_own_timeout_and_retries(self) -> None:
        seen: list[dict[str, Any]] = []

        def slow(request: httpx.Request) -> httpx.Response:
            seen.append(request.extensions["timeout"])
            raise httpx.ReadTimeout("slow", request=request)

        upstream = self._upstream(slow, retries=2)
        with pytest.raises(ServiceUnavailable):
            await upstream.request("GET", "/x", timeout=3.0, retries=0)
        assert len(seen) == 1
        assert seen[0]["read"] == 3.0
        assert seen[0]["pool"] == POOL_WAIT_SECONDS
        seen.clear()
        with pytest.raises(ServiceUnavailable):
            await upstream.request("GET", "/x")  # the client's: three attempts
        assert len(seen) == 3
