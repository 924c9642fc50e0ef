"""The gateway's front-door limits, in front of a stand-in service: rate limits per client (stricter on
login, referrals and redemptions), body size, page-size caps and CORS; and the webhook signature."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request

from services.gateway import app as gateway_app
from services.gateway.limits import RateRule, TokenBuckets, client_key
from services.gateway.settings import load_settings
from services.gateway.webhooks.hub import check_url
from services.gateway.webhooks.signing import sign, verify
from shared.errors import InvalidInput


def echo_service() -> FastAPI:
    service = FastAPI()

    @service.api_route("/{path:path}", methods=["GET", "POST", "PUT", "DELETE"])
    async def echo(path: str, request: Request) -> dict[str, Any]:
        return {"path": path, "bytes": len(await request.body())}

    return service


def gateway(tmp_path: Path, **overrides: Any) -> FastAPI:
    settings = load_settings(var_dir=tmp_path, **{"rate_limit_enabled": True, **overrides})
    clients = {
        "loyalty": httpx.AsyncClient(
            transport=httpx.ASGITransport(app=echo_service()), base_url="http://loyalty"
        )
    }
    return gateway_app.build(settings, clients=clients)


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    app = gateway(
        tmp_path,
        rate_limit_per_minute=60,
        rate_limit_burst=5,
        rate_limit_login_per_minute=2,
        rate_limit_referral_per_minute=2,
        rate_limit_redemption_per_minute=3,
        max_body_bytes=2048,
        max_page_size=100,
    )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as c:
        yield c


class TestRateLimits:
    async def test_default_bucket_per_client_then_429_with_retry_after(
        self, client: httpx.AsyncClient
    ) -> None:
        codes = [(await client.get("/api/loyalty/things")).status_code for _ in range(6)]
        assert codes == [200] * 5 + [429]
        refused = await client.get("/api/loyalty/things")
        assert refused.headers["content-type"] == "application/problem+json"
        assert int(refused.headers["retry-after"]) >= 1
        assert refused.json()["status"] == 429
        assert refused.json()["limit"] == "default"
        # Another client (an API key) has its own bucket; health checks are never limited.
        assert (await client.get("/api/loyalty/things", headers={"x-api-key": "k-1"})).status_code == 200
        assert (
            await client.get("/api/loyalty/things", headers={"authorization": "Bearer t"})
        ).status_code == 200
        assert (await client.get("/health")).status_code == 200

    async def test_login_is_stricter(self, client: httpx.AsyncClient) -> None:
        codes = [(await client.post("/auth/token", json={})).status_code for _ in range(3)]
        assert codes[2] == 429
        assert codes[:2] != [429, 429]
        # The default bucket is separate: other calls still pass.
        assert (await client.get("/api/loyalty/things")).status_code == 200

    async def test_redemptions_are_stricter(self, client: httpx.AsyncClient) -> None:
        path = "/api/loyalty/programs/default/members/m-1/redemptions"
        codes = [(await client.post(path, json={"reward_id": "r"})).status_code for _ in range(4)]
        assert codes == [200, 200, 200, 429]
        assert (await client.post(path, json={}, headers={"x-api-key": "other"})).status_code == 200

    async def test_enrolments_with_a_referral_code_are_stricter(self, client: httpx.AsyncClient) -> None:
        path = "/api/loyalty/programs/default/members"
        referred = [
            (await client.post(path, json={"customer_id": f"c{i}", "referral_code": "ABC"})).status_code
            for i in range(3)
        ]
        assert referred == [200, 200, 429]
        # Without a referral code an enrolment counts on the default bucket (and its body still arrives).
        plain = await client.post(path, json={"customer_id": "c9"})
        assert plain.status_code == 200
        assert plain.json()["bytes"] == len(json.dumps({"customer_id": "c9"}, separators=(",", ":")))

    def test_token_bucket_refills(self) -> None:
        now = [0.0]
        buckets = TokenBuckets(clock=lambda: now[0])
        rule = RateRule("r", per_minute=60, burst=2)
        assert [buckets.take(rule, "c") for _ in range(2)] == [0.0, 0.0]
        assert buckets.take(rule, "c") == pytest.approx(1.0)
        now[0] = 1.0
        assert buckets.take(rule, "c") == 0.0

    def test_idle_buckets_are_evicted(self) -> None:
        buckets = TokenBuckets(max_clients=100)
        rule = RateRule("r", per_minute=60, burst=2)
        for i in range(250):
            buckets.take(rule, f"c{i}")
        assert len(buckets) <= 100

    def test_on_by_default_outside_development(self, tmp_path: Path) -> None:
        assert not load_settings(var_dir=tmp_path, environment="development").rate_limits_on
        assert load_settings(var_dir=tmp_path, environment="test").rate_limits_on
        assert not load_settings(
            var_dir=tmp_path, environment="test", rate_limit_enabled=False
        ).rate_limits_on

    def test_client_identity(self) -> None:
        scope: dict[str, Any] = {"headers": [], "client": ("10.1.2.3", 5000)}
        assert client_key(scope, trust_forwarded_for=False) == "ip:10.1.2.3"
        scope["headers"] = [(b"x-forwarded-for", b"203.0.113.9, 10.0.0.1")]
        assert client_key(scope, trust_forwarded_for=False) == "ip:10.1.2.3"
        assert client_key(scope, trust_forwarded_for=True) == "ip:203.0.113.9"
        scope["headers"] = [(b"authorization", b"Bearer abc")]
        key = client_key(scope, trust_forwarded_for=True)
        assert key.startswith("key:")
        assert "abc" not in key


class TestBodyAndPageSize:
    async def test_body_over_the_limit_is_413(self, client: httpx.AsyncClient) -> None:
        ok = await client.post("/api/loyalty/things", content=b"x" * 2000)
        assert ok.status_code == 200
        big = await client.post("/api/loyalty/things", content=b"x" * 5000)
        assert big.status_code == 413
        assert big.headers["content-type"] == "application/problem+json"
        assert big.json()["max_bytes"] == 2048

    async def test_streamed_body_over_the_limit_is_413(self, client: httpx.AsyncClient) -> None:
        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(5):
                yield b"y" * 1000

        response = await client.post("/api/loyalty/things", content=chunks())
        assert response.status_code == 413
        assert response.headers["content-type"] == "application/problem+json"

    @pytest.mark.parametrize("name", ["limit", "page_size", "per_page"])
    async def test_page_size_over_the_cap_is_422_naming_it(
        self, client: httpx.AsyncClient, name: str
    ) -> None:
        assert (await client.get(f"/api/loyalty/things?{name}=100")).status_code == 200
        response = await client.get(f"/api/loyalty/things?{name}=101")
        assert response.status_code == 422
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["errors"][0]["field"] == f"query.{name}"


class TestCors:
    async def test_no_origins_by_default(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/api/loyalty/things", headers={"origin": "https://app.example"})
        assert "access-control-allow-origin" not in response.headers

    async def test_allowed_origins(self, tmp_path: Path) -> None:
        app = gateway(
            tmp_path, cors_origins=["https://app.example"], rate_limit_burst=1, rate_limit_per_minute=1
        )
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as c:
            preflight = await c.options(
                "/api/loyalty/things",
                headers={"origin": "https://app.example", "access-control-request-method": "POST"},
            )
            assert preflight.status_code == 200
            assert preflight.headers["access-control-allow-origin"] == "https://app.example"
            simple = await c.get("/api/loyalty/things", headers={"origin": "https://app.example"})
            assert simple.headers["access-control-allow-origin"] == "https://app.example"
            # A refusal is still readable by the browser app.
            limited = await c.get("/api/loyalty/things", headers={"origin": "https://app.example"})
            assert limited.status_code == 429
            assert limited.headers["access-control-allow-origin"] == "https://app.example"
            other = await c.options(
                "/api/loyalty/things",
                headers={"origin": "https://evil.example", "access-control-request-method": "POST"},
            )
            assert other.status_code == 400
            assert "access-control-allow-origin" not in other.headers


class TestWebhookBasics:
    def test_signature_round_trip_and_replay_window(self) -> None:
        body = b'{"id":"e-1"}'
        header = sign("whsec_s", body, timestamp=1_700_000_000)
        assert header.startswith("t=1700000000,v1=")
        assert verify("whsec_s", body, header, now=1_700_000_010)
        assert not verify("whsec_s", body + b" ", header, now=1_700_000_010)
        assert not verify("whsec_s", body, header, now=1_700_001_000)
        assert not verify("whsec_s", body, "garbage")
        assert verify("whsec_s", body, sign("whsec_s", body), now=time.time())

    @pytest.mark.parametrize(
        ("url", "allow", "ok"),
        [
            ("https://erp.example.com/hook", False, True),
            ("http://erp.example.com/hook", True, False),
            ("http://127.0.0.1:8080/hook", False, False),
            ("http://127.0.0.1:8080/hook", True, True),
            ("http://localhost/hook", True, True),
            ("https://192.168.1.10/hook", False, False),
            ("https://[::1]/hook", False, False),
            ("not a url", True, False),
        ],
    )
    def test_urls(self, url: str, allow: bool, ok: bool) -> None:
        if ok:
            check_url(url, allow_http_localhost=allow)
        else:
            with pytest.raises(InvalidInput):
                check_url(url, allow_http_localhost=allow)
