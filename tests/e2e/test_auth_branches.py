"""Branch-limited staff (a `branch` claim) end to end, and authentication before body validation and
API keys' `last_used_at` (issue 7).

* Lists of customers are limited to the caller's branch by identity, in its queries: search pages are
  full and the cursor walks exactly the branch's customers; lists a service cannot limit (complaints,
  segment members, member credentials) are refused unless narrowed to one customer of the branch.
* Loyalty routes keyed by a member id check the member's customer's branch.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from services.identity.models import MatchReviewRow
from services.platform import Platform
from tests.support.auth import auth_gateway, auth_platform, bearer, login

pytestmark = pytest.mark.auth

PROGRAM = "club"


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


async def new_customer(env: Env, tag: str, branch: str | None, **fields: Any) -> str:
    body = {"given_name": "Ana", "family_name": "García", "email": f"{tag}@example.com", **fields}
    if branch is not None:
        body["branch_id"] = branch
    response = await env.gw.post("/api/identity/customers", json=body, headers=env.admin)
    assert response.status_code == 201, response.text
    return str(response.json()["customer"]["id"])


async def staff(env: Env, username: str, roles: list[str], branch: str | None = "MAD-01") -> dict[str, str]:
    password = f"{username}-password-1"
    body: dict[str, Any] = {"username": username, "password": password, "roles": roles}
    if branch is not None:
        body["branch"] = branch
    created = await env.gw.post("/api/admin/users", json=body, headers=env.admin)
    assert created.status_code == 201, created.text
    return bearer(await login(env.gw, username, password))


async def all_pages(
    client: httpx.AsyncClient, path: str, headers: dict[str, str], **params: Any
) -> list[str]:
    ids: list[str] = []
    cursor = None
    for _ in range(20):
        response = await client.get(
            path, params={**params, **({"cursor": cursor} if cursor else {})}, headers=headers
        )
        assert response.status_code == 200, response.text
        page = response.json()
        ids += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            return ids
        assert len(page["items"]) == params["limit"]  # pages before the last one are full
    raise AssertionError("the cursor never ended")


async def test_search_is_limited_to_the_branch_with_correct_pagination(env: Env) -> None:
    mine = [await new_customer(env, f"m{i}", "MAD-01") for i in range(5)]
    theirs = [await new_customer(env, f"t{i}", "BCN-02") for i in range(4)]
    nowhere = await new_customer(env, "n0", None)
    marta = await staff(env, "marta", ["support"])

    found = await all_pages(env.gw, "/api/identity/customers", marta, q="ana garcia", limit=2)
    assert sorted(found) == sorted(mine)  # every one of the branch's, once, and nobody else
    everyone = await all_pages(env.gw, "/api/identity/customers", env.admin, q="ana garcia", limit=2)
    assert sorted(everyone) == sorted([*mine, *theirs, nowhere])

    # Exact criteria too: another branch's e-mail finds nothing, the branch's own finds it.
    other = await env.gw.get("/api/identity/customers", params={"email": "t0@example.com"}, headers=marta)
    assert other.status_code == 200
    assert other.json() == {"items": [], "next_cursor": None}
    own = await env.gw.get("/api/identity/customers", params={"email": "m0@example.com"}, headers=marta)
    assert [c["id"] for c in own.json()["items"]] == [mine[0]]

    # Identity filters itself (a direct call, bypassing the gateway).
    identity = env.platform.runtimes["identity"].app
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=identity), base_url="http://identity"
    ) as c:
        direct = await all_pages(c, "/customers", marta, q="ana garcia", limit=3)
        assert sorted(direct) == sorted(mine)


async def test_review_queue_is_limited_to_the_branch(env: Env) -> None:
    a, b = await new_customer(env, "a", "MAD-01"), await new_customer(env, "b", "MAD-01")
    c = await new_customer(env, "c", "BCN-02")
    runtime = env.platform.runtimes["identity"]
    async with runtime.sessions() as session, session.begin():
        for i, (left, right) in enumerate([(a, b), (a, c), (c, a), (b, a)]):
            session.add(
                MatchReviewRow(
                    id=f"review-{i}",
                    customer_id=left,
                    candidate_id=right,
                    probability=0.9 - i / 10,
                    score=1.0,
                    evidence=[],
                    reason="test",
                    status="pending",
                    created_at=datetime.now(UTC),
                )
            )
    head = await staff(env, "boss", ["admin"])
    page = await env.gw.get("/api/identity/match-reviews", params={"limit": 1, "offset": 1}, headers=head)
    assert page.status_code == 200, page.text  # filtered by identity, not refused
    assert [r["id"] for r in page.json()] == ["review-3"]  # offsets count the branch's reviews only
    mine = (await env.gw.get("/api/identity/match-reviews", headers=head)).json()
    assert [r["id"] for r in mine] == ["review-0", "review-3"]
    everyone = (await env.gw.get("/api/identity/match-reviews", headers=env.admin)).json()
    assert len(everyone) == 4


async def test_lists_a_service_cannot_limit_are_refused_unless_narrowed(env: Env) -> None:
    mine = await new_customer(env, "m", "MAD-01")
    theirs = await new_customer(env, "t", "BCN-02")
    marta = await staff(env, "marta", ["support"])
    refused = await env.gw.get("/api/interactions/complaints", headers=marta)
    assert refused.status_code == 403
    assert refused.headers["content-type"] == "application/problem+json"
    assert "branch" in refused.json()["detail"]
    assert (await env.gw.get("/api/interactions/complaints", headers=env.admin)).status_code == 200
    # Narrowed to one customer: checked like a path id.
    narrowed = await env.gw.get("/api/interactions/complaints", params={"customer_id": mine}, headers=marta)
    assert narrowed.status_code == 200, narrowed.text
    other = await env.gw.get("/api/interactions/complaints", params={"customer_id": theirs}, headers=marta)
    assert other.status_code == 403
    both = await env.gw.get(
        "/api/interactions/complaints", params=[("customer_id", mine), ("customer_id", theirs)], headers=marta
    )
    assert both.status_code == 403
    # Segment members and previews (customer ids), member credentials (e-mails): refused.
    mark = await staff(env, "mark", ["marketer"])
    assert (await env.gw.get("/api/segmentation/segments/any/members", headers=mark)).status_code == 403
    preview = await env.gw.post("/api/segmentation/segments/preview", json={"rule": {}}, headers=mark)
    assert preview.status_code == 403
    assert (await env.gw.get("/api/admin/members", headers=marta)).status_code == 403
    # Staff without a branch limit are unaffected.
    free = await staff(env, "free", ["support"], branch=None)
    assert (await env.gw.get("/api/interactions/complaints", headers=free)).status_code == 200
    assert (await env.gw.get("/api/admin/members", headers=free)).status_code == 200


async def test_loyalty_member_routes_check_the_members_branch(env: Env) -> None:
    mine = await new_customer(env, "m", "MAD-01")
    theirs = await new_customer(env, "t", "BCN-02")
    await env.platform.drain()
    program = await env.gw.post(
        "/api/loyalty/programs", json={"id": PROGRAM, "name": "Club"}, headers=env.admin
    )
    assert program.status_code == 201, program.text
    members = {}
    for name, customer in (("mine", mine), ("theirs", theirs)):
        enrolled = await env.gw.post(
            f"/api/loyalty/programs/{PROGRAM}/members", json={"customer_id": customer}, headers=env.admin
        )
        assert enrolled.status_code == 201, enrolled.text
        members[name] = enrolled.json()["id"]
    marta = await staff(env, "marta", ["support"])
    for path in (
        "/api/loyalty/programs/{p}/members/{m}",
        "/api/loyalty/programs/{p}/members/{m}/transactions",
        "/api/loyalty/programs/{p}/members/{m}/tier",
        "/api/loyalty/programs/{p}/members/{m}/redemptions",
    ):
        ok = await env.gw.get(path.format(p=PROGRAM, m=members["mine"]), headers=marta)
        assert ok.status_code == 200, (path, ok.text)
        no = await env.gw.get(path.format(p=PROGRAM, m=members["theirs"]), headers=marta)
        assert no.status_code == 403, (path, no.text)
        assert (
            await env.gw.get(path.format(p=PROGRAM, m=members["theirs"]), headers=env.admin)
        ).status_code == 200
    # A wrong program id is no way round it (some routes do not check the program themselves).
    sneaky = await env.gw.get(
        f"/api/loyalty/programs/other/members/{members['theirs']}/transactions", headers=marta
    )
    assert sneaky.status_code == 403
    # Writes too, before the body is looked at.
    adjust = await env.gw.post(
        f"/api/loyalty/programs/{PROGRAM}/members/{members['theirs']}/adjustments", json={}, headers=marta
    )
    assert adjust.status_code == 403
    own = await env.gw.post(
        f"/api/loyalty/programs/{PROGRAM}/members/{members['mine']}/adjustments", json={}, headers=marta
    )
    assert own.status_code == 422


# --- authentication before the body --------------------------------------------------------------------


BROKEN = b'{"given_name": '
JSON = {"content-type": "application/json"}


async def test_malformed_json_is_401_without_a_token_and_403_without_the_permission(env: Env) -> None:
    anonymous = await env.gw.post("/api/identity/customers", content=BROKEN, headers=JSON)
    assert anonymous.status_code == 401, anonymous.text
    assert anonymous.headers["www-authenticate"].startswith("Bearer")
    assert anonymous.headers["content-type"] == "application/problem+json"
    analyst = await staff(env, "ana", ["analyst"], branch=None)
    denied = await env.gw.post("/api/identity/customers", content=BROKEN, headers={**JSON, **analyst})
    assert denied.status_code == 403, denied.text
    allowed = await env.gw.post("/api/identity/customers", content=BROKEN, headers={**JSON, **env.admin})
    assert allowed.status_code == 422  # only a caller who may call the route hears about its body
    # The gateway's own routes and each service called directly, too.
    assert (await env.gw.post("/api/admin/users", content=BROKEN, headers=JSON)).status_code == 401
    for name, path in (("identity", "/customers"), ("loyalty", "/programs"), ("interactions", "/complaints")):
        app = env.platform.runtimes[name].app
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=f"http://{name}") as c:
            direct = await c.post(path, content=BROKEN, headers=JSON)
            assert direct.status_code == 401, (name, direct.text)
            authed = await c.post(path, content=BROKEN, headers={**JSON, **env.admin})
            assert authed.status_code == 422, (name, authed.text)


# --- API keys: last_used_at -------------------------------------------------------------------------------


async def test_api_key_last_used_at_is_recorded_throttled_and_listed(env: Env) -> None:
    created = await env.gw.post(
        "/api/admin/api-keys", json={"name": "importer", "roles": ["integration"]}, headers=env.admin
    )
    assert created.status_code == 201, created.text
    key, key_id = created.json()["key"], created.json()["id"]

    async def last_used() -> str | None:
        keys = (await env.gw.get("/api/admin/api-keys", headers=env.admin)).json()
        return next(k["last_used_at"] for k in keys if k["id"] == key_id)

    assert await last_used() is None
    path = "/api/identity/attribute-definitions"
    assert (await env.gw.get(path, headers={"x-api-key": key})).status_code == 200
    first = await last_used()
    assert first is not None
    writes = 0
    store = env.app.state.auth_store
    original = store.touch_api_key

    async def counting(key_id: str, when: Any = None) -> None:
        nonlocal writes
        writes += 1
        await original(key_id, when)

    store.touch_api_key = counting
    for _ in range(5):
        assert (await env.gw.get(path, headers={"x-api-key": key})).status_code == 200
    env.app.state.api_key_cache.clear()  # a fresh verification is throttled too
    assert (await env.gw.get(path, headers=bearer(key))).status_code == 200
    assert writes == 0  # at most once a minute per key
    assert await last_used() == first
    env.app.state.gateway_auth.api_key_touch_seconds = 0
    assert (await env.gw.get(path, headers={"x-api-key": key})).status_code == 200
    assert writes == 1
    later = await last_used()
    assert later is not None
    assert later > first
