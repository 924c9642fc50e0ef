"""Authentication and authorisation end to end, through the embedded platform with auth on.

Staff logins with rotating refresh tokens, client credentials, API keys, member logins and what a
member may (not) reach — every route with a customer id from the combined OpenAPI — property-level
limits on self-service, branch-limited staff, the audit log, key rotation, login rate limits and
services refusing direct calls without a valid token.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from fastapi import FastAPI
from sqlalchemy import update

from services.gateway.auth.models import api_keys
from services.platform import Platform
from tests.support.auth import ADMIN_PASSWORD, TestKeys, auth_gateway, auth_platform, bearer, login

pytestmark = pytest.mark.auth

PURCHASE = {
    "currency": "EUR",
    "channel": "store",
    "lines": [{"sku": "SKU-1", "category": "shoes", "quantity": 2, "unit_price_minor": 49999}],
}


@dataclass
class Env:
    platform: Platform
    app: FastAPI
    gw: httpx.AsyncClient
    admin: dict[str, str]


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    platform = auth_platform(tmp_path)
    app = auth_gateway(platform, tmp_path)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as gw,
    ):
        yield Env(platform, app, gw, bearer(await login(gw)))


async def new_customer(env: Env, **fields: Any) -> str:
    body = {"given_name": "Ana", "family_name": "García", "email": f"{fields.pop('tag', 'a')}@example.com"}
    response = await env.gw.post("/api/identity/customers", json={**body, **fields}, headers=env.admin)
    assert response.status_code == 201, response.text
    return str(response.json()["customer"]["id"])


async def member_login(env: Env, customer_id: str, email: str, password: str = "member-secret-1") -> str:
    created = await env.gw.post(
        "/api/admin/members",
        json={"email": email, "password": password, "customer_id": customer_id},
        headers=env.admin,
    )
    assert created.status_code == 201, created.text
    response = await env.gw.post(
        "/auth/member/token", data={"grant_type": "password", "username": email, "password": password}
    )
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


# --- staff -------------------------------------------------------------------------------------------


async def test_no_token_wrong_token_and_wrong_password_are_refused(env: Env) -> None:
    response = await env.gw.get("/api/identity/attribute-definitions")
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.headers["content-type"] == "application/problem+json"
    forged = TestKeys().token(roles=("admin",))  # signed by a key the gateway never published
    assert (
        await env.gw.get("/api/identity/attribute-definitions", headers=bearer(forged))
    ).status_code == 401
    bad = await env.gw.post(
        "/auth/token", data={"grant_type": "password", "username": "admin", "password": "x"}
    )
    assert bad.status_code == 401
    nobody = await env.gw.post(
        "/auth/token", data={"grant_type": "password", "username": "ghost", "password": "x"}
    )
    assert nobody.status_code == 401
    assert (await env.gw.get("/api/identity/attribute-definitions", headers=env.admin)).status_code == 200


async def test_staff_login_refresh_rotation_reuse_and_revoke(env: Env) -> None:
    created = await env.gw.post(
        "/api/admin/users",
        json={"username": "lucia", "password": "lucia-password-1", "roles": ["support"]},
        headers=env.admin,
    )
    assert created.status_code == 201, created.text
    assert "password" not in created.text
    first = (
        await env.gw.post(
            "/auth/token",
            data={"grant_type": "password", "username": "lucia", "password": "lucia-password-1"},
        )
    ).json()
    claims = jwt.decode(first["access_token"], options={"verify_signature": False})
    assert claims["roles"] == ["support"]
    assert claims["kind"] == "user"
    assert claims["sub"] == "lucia"
    assert jwt.get_unverified_header(first["access_token"])["alg"] == "EdDSA"
    assert first["expires_in"] == 900

    # Support may read customers, not manage users nor read the audit log.
    assert (
        await env.gw.get("/api/identity/attribute-definitions", headers=bearer(first["access_token"]))
    ).status_code == 200
    assert (await env.gw.get("/api/admin/users", headers=bearer(first["access_token"]))).status_code == 403
    assert (await env.gw.get("/api/admin/audit", headers=bearer(first["access_token"]))).status_code == 403

    second = await env.gw.post(
        "/auth/token", data={"grant_type": "refresh_token", "refresh_token": first["refresh_token"]}
    )
    assert second.status_code == 200
    rotated = second.json()["refresh_token"]
    assert rotated != first["refresh_token"]
    # Reusing the spent refresh token: refused, and the whole family (the rotated one too) is revoked.
    reuse = await env.gw.post(
        "/auth/token", data={"grant_type": "refresh_token", "refresh_token": first["refresh_token"]}
    )
    assert reuse.status_code == 401
    assert (
        await env.gw.post("/auth/token", data={"grant_type": "refresh_token", "refresh_token": rotated})
    ).status_code == 401

    # A fresh session, revoked (logout): its refresh token is dead.
    third = (
        await env.gw.post(
            "/auth/token",
            data={"grant_type": "password", "username": "lucia", "password": "lucia-password-1"},
        )
    ).json()
    assert (await env.gw.post("/auth/revoke", data={"token": third["refresh_token"]})).status_code == 200
    assert (
        await env.gw.post(
            "/auth/token", data={"grant_type": "refresh_token", "refresh_token": third["refresh_token"]}
        )
    ).status_code == 401

    # Disabling the user stops logins.
    assert (
        await env.gw.patch("/api/admin/users/lucia", json={"disabled": True}, headers=env.admin)
    ).status_code == 200
    assert (
        await env.gw.post(
            "/auth/token",
            data={"grant_type": "password", "username": "lucia", "password": "lucia-password-1"},
        )
    ).status_code == 401


async def test_the_admin_is_created_once(env: Env) -> None:
    users = (await env.gw.get("/api/admin/users", headers=env.admin)).json()
    assert [u["username"] for u in users] == ["admin"]
    await env.app.state.gateway_auth.bootstrap_admin()  # a restart: users exist, nobody is added
    assert await env.app.state.auth_store.count_users() == 1


# --- integration clients and API keys ----------------------------------------------------------------


async def test_client_credentials(env: Env) -> None:
    created = await env.gw.post(
        "/api/admin/clients", json={"name": "POS", "roles": ["integration"]}, headers=env.admin
    )
    assert created.status_code == 201, created.text
    client_id, secret = created.json()["client_id"], created.json()["client_secret"]
    listed = (await env.gw.get("/api/admin/clients", headers=env.admin)).text
    assert secret not in listed
    token = await env.gw.post(
        "/auth/token", data={"grant_type": "client_credentials"}, auth=(client_id, secret)
    )
    assert token.status_code == 200, token.text
    assert "refresh_token" not in token.json()
    headers = bearer(token.json()["access_token"])
    assert (await env.gw.get("/api/identity/attribute-definitions", headers=headers)).status_code == 200
    assert (await env.gw.get("/api/admin/users", headers=headers)).status_code == 403
    # Scope narrows: a token asking only for interactions.write cannot read profiles.
    narrow = await env.gw.post(
        "/auth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": client_id,
            "client_secret": secret,
            "scope": "interactions.write",
        },
    )
    assert narrow.status_code == 200
    assert (
        await env.gw.get("/api/identity/attribute-definitions", headers=bearer(narrow.json()["access_token"]))
    ).status_code == 403
    wrong = await env.gw.post(
        "/auth/token", data={"grant_type": "client_credentials"}, auth=(client_id, "nope")
    )
    assert wrong.status_code == 401
    assert (await env.gw.delete(f"/api/admin/clients/{client_id}", headers=env.admin)).status_code == 204
    gone = await env.gw.post(
        "/auth/token", data={"grant_type": "client_credentials"}, auth=(client_id, secret)
    )
    assert gone.status_code == 401


async def test_api_key_create_use_revoke_and_expiry(env: Env) -> None:
    created = await env.gw.post(
        "/api/admin/api-keys",
        json={"name": "importer", "roles": ["integration"], "scopes": ["profile.read", "interactions.write"]},
        headers=env.admin,
    )
    assert created.status_code == 201, created.text
    key, key_id = created.json()["key"], created.json()["id"]
    listed = (await env.gw.get("/api/admin/api-keys", headers=env.admin)).text
    assert key.split(".")[1] not in listed  # the secret is shown once, never listed
    assert (
        await env.gw.get("/api/identity/attribute-definitions", headers={"x-api-key": key})
    ).status_code == 200
    # The services got a short-lived JWT for the key's principal, not the key.
    assert (await env.gw.get("/api/identity/attribute-definitions", headers=bearer(key))).status_code == 200
    assert (await env.gw.get("/api/loyalty/programs", headers={"x-api-key": key})).status_code == 403  # scope
    assert (
        await env.gw.get("/api/identity/attribute-definitions", headers={"x-api-key": key + "x"})
    ).status_code == 401
    assert (await env.gw.delete(f"/api/admin/api-keys/{key_id}", headers=env.admin)).status_code == 204
    assert (
        await env.gw.get("/api/identity/attribute-definitions", headers={"x-api-key": key})
    ).status_code == 401

    past = await env.gw.post(
        "/api/admin/api-keys",
        json={"name": "old", "expires_at": (datetime.now(UTC) - timedelta(days=1)).isoformat()},
        headers=env.admin,
    )
    assert past.status_code == 422
    expiring = (
        await env.gw.post(
            "/api/admin/api-keys",
            json={"name": "short", "expires_at": (datetime.now(UTC) + timedelta(days=1)).isoformat()},
            headers=env.admin,
        )
    ).json()
    assert (
        await env.gw.get("/api/identity/attribute-definitions", headers={"x-api-key": expiring["key"]})
    ).status_code == 200
    async with env.app.state.auth_store.sessions() as session, session.begin():
        await session.execute(
            update(api_keys)
            .where(api_keys.c.id == expiring["id"])
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    env.app.state.api_key_cache.clear()
    assert (
        await env.gw.get("/api/identity/attribute-definitions", headers={"x-api-key": expiring["key"]})
    ).status_code == 401


# --- members -----------------------------------------------------------------------------------------


def customer_routes(document: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(method, path template, customer parameter) of every operation carrying a customer id."""
    out = []
    for path, item in document["paths"].items():
        for name in ("customer_id", "organisation_id"):
            if "{" + name + "}" in path:
                for method in item:
                    if method in ("get", "post", "put", "patch", "delete"):
                        out.append((method.upper(), path, name))
                break
    return out


def fill(path: str, param: str, customer_id: str) -> str:
    return re.sub(r"{[^}]+}", "x1", path.replace("{" + param + "}", customer_id))


async def test_member_sees_own_data_and_nothing_of_anyone_else(env: Env) -> None:
    a = await new_customer(env, tag="ana")
    b = await new_customer(env, tag="bea", given_name="Bea")
    for customer in (a, b):
        response = await env.gw.post(
            "/api/interactions/purchases", json={**PURCHASE, "customer_id": customer}, headers=env.admin
        )
        assert response.status_code == 201, response.text
    await env.platform.drain()
    token_a = await member_login(env, a, "ana@example.com")
    await member_login(env, b, "bea@example.com")
    as_a = bearer(token_a)

    # Own data, through the self-service routes.
    me = await env.gw.get("/api/me", headers=as_a)
    assert me.status_code == 200
    assert me.json()["id"] == a
    assert (await env.gw.get("/api/me/timeline", headers=as_a)).status_code == 200
    points = await env.gw.get("/api/me/points", headers=as_a)
    assert points.status_code == 200, points.text
    assert points.json()["customer_id"] == a
    rewards = await env.gw.get("/api/me/rewards", headers=as_a)
    assert rewards.status_code == 200, rewards.text
    # ...and through the service routes marked self-service, with the member's own id.
    assert (await env.gw.get(f"/api/identity/customers/{a}", headers=as_a)).status_code == 200
    assert (await env.gw.get(f"/api/loyalty/members/{a}/balance", headers=as_a)).status_code == 200
    assert (await env.gw.get(f"/api/interactions/customers/{a}/timeline", headers=as_a)).status_code == 200

    # BOLA: every operation with a customer id in the combined OpenAPI, with B's id and A's token.
    document = (await env.gw.get("/openapi.json")).json()
    routes = customer_routes(document)
    from shared.auth.policy import ROUTES

    expected = {
        (method, template if service == "gateway" else f"/api/{service}{template}")
        for service, table in ROUTES.items()
        for (method, template), rule in table.items()
        if rule.customer_param
    }
    assert {(m, p) for m, p, _ in routes} == expected  # the OpenAPI lists every one of them
    refused = []
    for method, path, param in routes:
        response = await env.gw.request(method, fill(path, param, b), headers=as_a, json={})
        assert response.status_code in (403, 404), (method, path, response.status_code, response.text)
        refused.append(response.status_code)
    assert refused.count(403) >= len(routes) - 5
    # Staff-only routes are refused to members even for their own id; lists and admin too.
    for method, path in [
        ("GET", f"/api/segmentation/customers/{a}/features"),
        ("GET", f"/api/customers/{a}/360"),
        ("GET", f"/api/customers/{a}/export"),
        ("DELETE", f"/api/identity/customers/{a}"),
        ("PATCH", f"/api/identity/customers/{a}"),
        ("GET", "/api/identity/customers"),
        ("GET", "/api/loyalty/programs"),
        ("GET", "/api/admin/audit"),
        ("POST", "/api/admin/members"),
    ]:
        response = await env.gw.request(method, path, headers=as_a, json={})
        assert response.status_code == 403, (method, path, response.status_code)
    # Bea's data is untouched and still hers.
    still = await env.gw.get(f"/api/identity/customers/{b}", headers=env.admin)
    assert still.json()["given_name"] == "Bea"


async def test_member_cannot_escalate_through_extra_fields(env: Env) -> None:
    a = await new_customer(env, tag="ana")
    as_a = bearer(await member_login(env, a, "ana@example.com"))
    before = (await env.gw.get("/api/me", headers=as_a)).json()
    for extra in (
        {"tier": "gold"},
        {"points": 100000},
        {"segments": ["vip"]},
        {"status": "active"},
        {"merged_into": "someone"},
        {"branch_id": "HQ"},
        {"email": "other@example.com"},
        {"phone": "+34 600 000 000", "tier": "gold"},
    ):
        response = await env.gw.patch("/api/me", json=extra, headers=as_a)
        assert response.status_code == 422, (extra, response.text)
    after = (await env.gw.get("/api/me", headers=as_a)).json()
    assert after == before
    ok = await env.gw.patch("/api/me", json={"phone": "+34 699 000 111", "language": "es"}, headers=as_a)
    assert ok.status_code == 200, ok.text
    assert ok.json()["language"] == "es"
    # The staff route is not a way round the member schema.
    staff_route = await env.gw.patch(f"/api/identity/customers/{a}", json={"status": "active"}, headers=as_a)
    assert staff_route.status_code == 403
    # A member cannot redeem for someone else: redemption is always the token's own membership.
    redeem = await env.gw.post("/api/me/rewards/nope/redeem", headers=as_a, json={"member_id": "x"})
    assert redeem.status_code == 422


async def test_token_exchange_for_trusted_apps(env: Env) -> None:
    a = await new_customer(env, tag="ana")
    await member_login(env, a, "ana@example.com")
    created = (
        await env.gw.post(
            "/api/admin/clients", json={"name": "member app", "roles": ["integration"]}, headers=env.admin
        )
    ).json()
    exchange = {
        "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
        "client_id": created["client_id"],
        "client_secret": created["client_secret"],
        "subject_token": a,
        "subject_token_type": "urn:crm:params:customer-id",
    }
    response = await env.gw.post("/auth/token", data=exchange)
    assert response.status_code == 200, response.text
    me = await env.gw.get("/api/me", headers=bearer(response.json()["access_token"]))
    assert me.status_code == 200
    assert me.json()["id"] == a
    analyst = (
        await env.gw.post(
            "/api/admin/clients", json={"name": "reports", "roles": ["analyst"]}, headers=env.admin
        )
    ).json()
    refused = await env.gw.post(
        "/auth/token",
        data={**exchange, "client_id": analyst["client_id"], "client_secret": analyst["client_secret"]},
    )
    assert refused.status_code == 403


# --- defence in depth --------------------------------------------------------------------------------


async def test_services_refuse_direct_calls_without_a_valid_token(env: Env) -> None:
    for name, runtime in env.platform.runtimes.items():
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=runtime.app), base_url=f"http://{name}"
        ) as c:
            path = {
                "identity": "/attribute-definitions",
                "interactions": "/complaints",
                "segmentation": "/segments",
                "loyalty": "/programs",
            }[name]
            response = await c.get(path)
            assert response.status_code == 401, name
            assert "Bearer" in response.headers["www-authenticate"]
            forged = TestKeys().token(roles=("admin",))
            assert (await c.get(path, headers=bearer(forged))).status_code == 401
            assert (await c.get(path, headers={"x-actor": "admin"})).status_code == 401
            assert (await c.get(path, headers=env.admin)).status_code == 200
            assert (await c.get("/health")).status_code == 200


async def test_branch_limited_staff(env: Env) -> None:
    mine = await new_customer(env, tag="m", branch_id="MAD-01")
    theirs = await new_customer(env, tag="t", branch_id="BCN-02")
    await env.gw.post(
        "/api/admin/users",
        json={"username": "marta", "password": "marta-password-1", "roles": ["support"], "branch": "MAD-01"},
        headers=env.admin,
    )
    token = await login(env.gw, "marta", "marta-password-1")
    assert jwt.decode(token, options={"verify_signature": False})["branch"] == "MAD-01"
    marta = bearer(token)
    for path in (
        "/api/identity/customers/{}",
        "/api/customers/{}/360",
        "/api/interactions/customers/{}/timeline",
    ):
        assert (await env.gw.get(path.format(mine), headers=marta)).status_code == 200, path
        assert (await env.gw.get(path.format(theirs), headers=marta)).status_code == 403, path
    # Identity checks it itself too (a direct call, bypassing the gateway).
    identity = env.platform.runtimes["identity"].app
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=identity), base_url="http://identity"
    ) as c:
        assert (await c.get(f"/customers/{mine}", headers=marta)).status_code == 200
        assert (await c.get(f"/customers/{theirs}", headers=marta)).status_code == 403
        assert (await c.get(f"/customers/{theirs}", headers=env.admin)).status_code == 200


async def test_audit_log_records_personal_data_access(env: Env) -> None:
    a = await new_customer(env, tag="ana")
    as_a = bearer(await member_login(env, a, "ana@example.com"))
    await env.gw.get(f"/api/identity/customers/{a}", headers={**env.admin, "x-purpose": "complaint 42"})
    await env.gw.get("/api/me", headers=as_a)
    await env.gw.get(f"/api/segmentation/customers/{a}/features", headers=as_a)  # refused: logged as 403
    await asyncio.sleep(0.5)  # the writer flushes every 0.2 s
    page = (await env.gw.get("/api/admin/audit", params={"customer_id": a}, headers=env.admin)).json()
    rows = page["items"]
    by_actor = {(r["actor"], r["route"], r["status"]) for r in rows}
    assert ("user:admin", "/api/identity/customers/{customer_id}", 200) in by_actor
    assert (f"member:{a}", "/api/me", 200) in by_actor
    assert (f"member:{a}", "/api/segmentation/customers/{customer_id}/features", 403) in by_actor
    purposeful = [r for r in rows if r["purpose"] == "complaint 42"]
    assert purposeful
    assert purposeful[0]["actor_kind"] == "user"
    assert purposeful[0]["roles"] == "admin"
    assert all(r["request_id"] for r in rows)
    only_member = (
        await env.gw.get("/api/admin/audit", params={"actor": f"member:{a}", "limit": 1}, headers=env.admin)
    ).json()
    assert len(only_member["items"]) == 1
    assert only_member["next_offset"] == 1
    future = (
        await env.gw.get(
            "/api/admin/audit",
            params={"since": (datetime.now(UTC) + timedelta(hours=1)).isoformat()},
            headers=env.admin,
        )
    ).json()
    assert future["items"] == []


async def test_audit_is_flushed_on_shutdown(tmp_path: Path) -> None:
    platform = auth_platform(tmp_path)
    app = auth_gateway(platform, tmp_path, audit_flush_interval=60)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as gw,
    ):
        admin = bearer(await login(gw))
        for _ in range(5):
            await gw.get("/api/identity/attribute-definitions", headers=admin)
        assert app.state.audit.written == 0  # still buffered: no latency added
    assert app.state.audit.written == 5


async def test_key_rotation_keeps_old_tokens_valid(env: Env) -> None:
    old_token = env.admin["authorization"].removeprefix("Bearer ")
    old_kid = jwt.get_unverified_header(old_token)["kid"]
    rotated = await env.gw.post("/api/admin/signing-keys/rotate", headers=env.admin)
    assert rotated.status_code == 200
    jwks = (await env.gw.get("/auth/jwks.json")).json()
    kids = {k["kid"] for k in jwks["keys"]}
    assert old_kid in kids
    assert rotated.json()["kid"] in kids
    assert len(kids) == 2
    assert all(k["alg"] == "EdDSA" and "d" not in k for k in jwks["keys"])  # public halves only
    assert (await env.gw.get("/api/identity/attribute-definitions", headers=env.admin)).status_code == 200
    new_token = await login(env.gw)
    assert jwt.get_unverified_header(new_token)["kid"] == rotated.json()["kid"]
    assert (
        await env.gw.get("/api/identity/attribute-definitions", headers=bearer(new_token))
    ).status_code == 200
    # Once every token the old key signed has expired, it leaves the JWKS.
    store = env.app.state.auth_store
    store.settings.auth_access_ttl_seconds = 30
    store.settings.auth_apikey_token_ttl_seconds = 10
    from services.gateway.auth.models import signing_keys

    async with store.sessions() as session, session.begin():
        await session.execute(
            update(signing_keys)
            .where(signing_keys.c.kid == old_kid)
            .values(retired_at=datetime.now(UTC) - timedelta(hours=1))
        )
    await store.maintain_keys()
    kids = {k["kid"] for k in (await env.gw.get("/auth/jwks.json")).json()["keys"]}
    assert kids == {rotated.json()["kid"]}
    assert (await env.gw.get("/api/identity/attribute-definitions", headers=env.admin)).status_code == 401


async def test_automatic_rotation_by_age(env: Env) -> None:
    store = env.app.state.auth_store
    before = jwt.get_unverified_header(await login(env.gw))["kid"]
    await store.maintain_keys()
    assert jwt.get_unverified_header(await login(env.gw))["kid"] == before  # young key: kept
    store.settings.auth_key_max_age_seconds = 60
    from services.gateway.auth.models import signing_keys

    async with store.sessions() as session, session.begin():
        await session.execute(update(signing_keys).values(created_at=datetime.now(UTC) - timedelta(hours=1)))
    await store.maintain_keys()
    assert jwt.get_unverified_header(await login(env.gw))["kid"] != before


async def test_login_rate_limit(tmp_path: Path) -> None:
    platform = auth_platform(tmp_path)
    app = auth_gateway(platform, tmp_path, rate_limit_enabled=True, rate_limit_login_per_minute=3)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as gw,
    ):
        form = {"grant_type": "password", "username": "admin", "password": "wrong"}
        codes = [(await gw.post("/auth/token", data=form)).status_code for _ in range(5)]
        assert codes[:3] == [401, 401, 401]
        assert codes[3:] == [429, 429]
        member = [(await gw.post("/auth/member/token", data=form)).status_code for _ in range(2)]
        assert 429 in member
        # Other calls are on another bucket.
        assert (await gw.get("/health")).status_code == 200
        assert ADMIN_PASSWORD
