"""Branch-limited staff (a `branch` claim) and object ids other than customer / member ids, and the
customer / member ids in request bodies (`policy.OWNERS`, `body=` markers).

For each route family a support agent of branch MAD-01 is refused (403 problem+json) another branch's
object and allowed their own; an admin without a branch is unaffected (and costs no lookup); an object
whose customer cannot be found is refused to branch-limited staff (fail closed); ids of another branch's
customers or members in a body are refused.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.identity.models import MatchReviewRow
from tests.e2e.test_auth_branches import Env, new_customer, staff
from tests.support.auth import auth_gateway, auth_platform, bearer, login

pytestmark = pytest.mark.auth

PROGRAM = "club"
PURCHASE = {
    "currency": "EUR",
    "channel": "store",
    "lines": [{"sku": "SKU-1", "category": "shoes", "quantity": 1, "unit_price_minor": 5000}],
}
COMPLAINT = {"channel": "email", "priority": "high", "category": "billing", "subject": "Charged twice"}


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    platform = auth_platform(tmp_path)
    app = auth_gateway(platform, tmp_path)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as gw,
    ):
        yield Env(platform, app, gw, bearer(await login(gw)))


def refused(response: httpx.Response, what: Any = "") -> None:
    assert response.status_code == 403, (what, response.status_code, response.text)
    assert response.headers["content-type"] == "application/problem+json", what


def passed(response: httpx.Response, what: Any = "") -> None:
    """Past the guard: whatever the route answers, it is not the branch refusal."""
    assert response.status_code != 403, (what, response.text)
    assert response.status_code < 500, (what, response.text)


async def created(response: Any) -> dict[str, Any]:
    result = await response
    assert result.status_code in (200, 201), result.text
    return dict(result.json())


async def customers(env: Env) -> tuple[str, str]:
    mine = await new_customer(env, "m", "MAD-01")
    theirs = await new_customer(env, "t", "BCN-02")
    await env.platform.drain()
    return mine, theirs


def object_lookups(env: Env) -> int:
    return len(env.app.state.gateway_auth.object_cache)


# --- interactions: purchases, complaints, contacts --------------------------------------------------


async def test_interactions_objects_are_checked_against_the_branch(env: Env) -> None:
    mine, theirs = await customers(env)
    ids: dict[str, dict[str, str]] = {}
    for name, customer in (("mine", mine), ("theirs", theirs)):
        purchase = await created(
            env.gw.post(
                "/api/interactions/purchases", json={**PURCHASE, "customer_id": customer}, headers=env.admin
            )
        )
        complaint = await created(
            env.gw.post(
                "/api/interactions/complaints", json={**COMPLAINT, "customer_id": customer}, headers=env.admin
            )
        )
        contact = await created(
            env.gw.post(
                "/api/interactions/interactions",
                json={"customer_id": customer, "channel": "phone", "kind": "inquiry"},
                headers=env.admin,
            )
        )
        ids[name] = {"p": purchase["id"], "c": complaint["id"], "i": contact["id"]}
    assert object_lookups(env) == 0  # callers without a branch claim cost no lookup
    marta = await staff(env, "marta", ["support"])
    reads = (
        "/api/interactions/purchases/{p}",
        "/api/interactions/complaints/{c}",
        "/api/interactions/interactions/{i}",
    )
    writes = (
        "/api/interactions/purchases/{p}/payment-status",
        "/api/interactions/purchases/{p}/refunds",
        "/api/interactions/complaints/{c}/status",
        "/api/interactions/complaints/{c}/messages",
        "/api/interactions/complaints/{c}/assign",
    )
    for path in reads:
        refused(await env.gw.get(path.format(**ids["theirs"]), headers=marta), path)
        own = await env.gw.get(path.format(**ids["mine"]), headers=marta)
        assert own.status_code == 200, (path, own.text)
        assert (await env.gw.get(path.format(**ids["theirs"]), headers=env.admin)).status_code == 200
    for path in writes:  # refused before the body is looked at; their own: the body's 422
        refused(await env.gw.post(path.format(**ids["theirs"]), json={}, headers=marta), path)
        own = await env.gw.post(path.format(**ids["mine"]), json={}, headers=marta)
        assert own.status_code == 422, (path, own.text)
        assert (
            await env.gw.post(path.format(**ids["theirs"]), json={}, headers=env.admin)
        ).status_code == 422
    status = {"status": "acknowledged", "actor_id": "marta"}
    ok = await env.gw.post(
        f"/api/interactions/complaints/{ids['mine']['c']}/status", json=status, headers=marta
    )
    assert ok.status_code == 200, ok.text
    # Fail closed: an object whose customer cannot be found is refused, not passed.
    refused(await env.gw.get("/api/interactions/complaints/no-such-complaint", headers=marta))
    assert (
        await env.gw.get("/api/interactions/complaints/no-such-complaint", headers=env.admin)
    ).status_code == 404


async def test_interactions_body_customer_ids_are_checked(env: Env) -> None:
    mine, theirs = await customers(env)
    marta = await staff(env, "marta", ["support"])
    bodies: dict[str, dict[str, Any]] = {
        "/api/interactions/purchases": PURCHASE,
        "/api/interactions/complaints": COMPLAINT,
        "/api/interactions/interactions": {"channel": "phone", "kind": "inquiry"},
    }
    for path, body in bodies.items():
        refused(await env.gw.post(path, json={**body, "customer_id": theirs}, headers=marta), path)
        own = await env.gw.post(path, json={**body, "customer_id": mine}, headers=marta)
        assert own.status_code == 201, (path, own.text)
        admin = await env.gw.post(path, json={**body, "customer_id": theirs}, headers=env.admin)
        assert admin.status_code == 201, (path, admin.text)
    # A contact by customer identifier cannot be checked against a branch: branch-limited staff give the id.
    by_email = {"customer": {"email": "m@example.com"}, "channel": "phone", "kind": "inquiry"}
    refused(await env.gw.post("/api/interactions/interactions", json=by_email, headers=marta))
    bulk = {"items": [{**PURCHASE, "customer_id": mine}, {**PURCHASE, "customer_id": theirs}]}
    refused(await env.gw.post("/api/interactions/purchases/bulk", json=bulk, headers=marta))
    bulk = {"items": [{**PURCHASE, "customer_id": mine}]}
    passed(await env.gw.post("/api/interactions/purchases/bulk", json=bulk, headers=marta))


# --- loyalty: cards, transactions, redemptions, households, body member ids ------------------------


async def test_loyalty_objects_are_checked_against_the_branch(env: Env) -> None:
    mine, theirs = await customers(env)
    await created(
        env.gw.post("/api/loyalty/programs", json={"id": PROGRAM, "name": "Club"}, headers=env.admin)
    )
    reward = await created(
        env.gw.post(
            f"/api/loyalty/programs/{PROGRAM}/rewards",
            json={"kind": "voucher", "name": "Voucher", "cost_points": 100},
            headers=env.admin,
        )
    )
    ids: dict[str, dict[str, str]] = {}
    for name, customer in (("mine", mine), ("theirs", theirs)):
        member = await created(
            env.gw.post(
                f"/api/loyalty/programs/{PROGRAM}/members", json={"customer_id": customer}, headers=env.admin
            )
        )
        m = member["id"]
        grant = await created(
            env.gw.post(
                f"/api/loyalty/programs/{PROGRAM}/members/{m}/adjustments",
                json={"points": 1000, "reason": "test"},
                headers=env.admin,
            )
        )
        redemption = await created(
            env.gw.post(
                f"/api/loyalty/programs/{PROGRAM}/members/{m}/redemptions",
                json={"reward_id": reward["id"]},
                headers=env.admin,
            )
        )
        household = await created(
            env.gw.post(
                f"/api/loyalty/programs/{PROGRAM}/households",
                json={"name": f"{name} household", "owner_member_id": m},
                headers=env.admin,
            )
        )
        ids[name] = {
            "m": m,
            "card": member["card_number"],
            "t": grant["id"],
            "r": redemption["id"],
            "h": household["id"],
        }
    assert object_lookups(env) == 0
    marta = await staff(env, "marta", ["support"])
    reads = (
        "/api/loyalty/cards/{card}",
        "/api/loyalty/transactions/{t}",
        "/api/loyalty/redemptions/{r}",
        f"/api/loyalty/programs/{PROGRAM}/households/{{h}}",
    )
    for path in reads:
        refused(await env.gw.get(path.format(**ids["theirs"]), headers=marta), path)
        own = await env.gw.get(path.format(**ids["mine"]), headers=marta)
        assert own.status_code == 200, (path, own.text)
        assert (await env.gw.get(path.format(**ids["theirs"]), headers=env.admin)).status_code == 200
    writes = (
        "/api/loyalty/transactions/{t}/reversal",
        "/api/loyalty/redemptions/{r}/confirm",
        "/api/loyalty/redemptions/{r}/cancel",
        f"/api/loyalty/programs/{PROGRAM}/households/{{h}}/members",
        f"/api/loyalty/programs/{PROGRAM}/households/{{h}}/pool-transfers",
    )
    for path in writes:
        refused(await env.gw.post(path.format(**ids["theirs"]), json={"bad": 1}, headers=marta), path)
        passed(await env.gw.post(path.format(**ids["mine"]), json={"bad": 1}, headers=marta), path)
    refused(await env.gw.get("/api/loyalty/transactions/no-such-transaction", headers=marta))
    refused(await env.gw.get(f"/api/loyalty/programs/{PROGRAM}/households/nope", headers=marta))

    # Member ids in bodies: a transfer to, a household joined by, another branch's member.
    transfer = {"to_member_id": ids["theirs"]["m"], "points": 10}
    path = f"/api/loyalty/programs/{PROGRAM}/members/{ids['mine']['m']}/transfers"
    refused(await env.gw.post(path, json=transfer, headers=marta))
    assert (await env.gw.post(path, json=transfer, headers=env.admin)).status_code == 201
    join = f"/api/loyalty/programs/{PROGRAM}/households/{ids['mine']['h']}/members"
    refused(await env.gw.post(join, json={"member_id": ids["theirs"]["m"]}, headers=marta))
    new = {"name": "x", "owner_member_id": ids["theirs"]["m"]}
    refused(await env.gw.post(f"/api/loyalty/programs/{PROGRAM}/households", json=new, headers=marta))


async def test_loyalty_enrolment_checks_the_body_customer(env: Env) -> None:
    mine, theirs = await customers(env)
    await created(
        env.gw.post("/api/loyalty/programs", json={"id": PROGRAM, "name": "Club"}, headers=env.admin)
    )
    marta = await staff(env, "marta", ["support"])
    path = f"/api/loyalty/programs/{PROGRAM}/members"
    refused(await env.gw.post(path, json={"customer_id": theirs}, headers=marta))
    assert (await env.gw.post(path, json={"customer_id": mine}, headers=marta)).status_code == 201
    assert (await env.gw.post(path, json={"customer_id": theirs}, headers=env.admin)).status_code == 201


# --- identity: match reviews, source records, households ------------------------------------------


async def test_identity_objects_are_checked_against_the_branch(env: Env) -> None:
    a, b = await new_customer(env, "a", "MAD-01"), await new_customer(env, "b", "MAD-01")
    c = await new_customer(env, "c", "BCN-02")
    runtime = env.platform.runtimes["identity"]
    async with runtime.sessions() as session, session.begin():
        for review_id, left, right in (("own", a, b), ("mixed", a, c)):
            session.add(
                MatchReviewRow(
                    id=review_id,
                    customer_id=left,
                    candidate_id=right,
                    probability=0.9,
                    score=1.0,
                    evidence=[],
                    reason="test",
                    status="pending",
                    created_at=datetime.now(UTC),
                )
            )
    head = await staff(env, "head", ["admin"])  # an admin limited to MAD-01
    own = await env.gw.get("/api/identity/match-reviews/own", headers=head)
    assert own.status_code == 200, own.text
    refused(await env.gw.get("/api/identity/match-reviews/mixed", headers=head))  # both customers count
    refused(await env.gw.post("/api/identity/match-reviews/mixed/decision", json={}, headers=head))
    decided = await env.gw.post(
        "/api/identity/match-reviews/own/decision", json={"decision": "keep_apart"}, headers=head
    )
    assert decided.status_code == 200, decided.text
    assert (await env.gw.get("/api/identity/match-reviews/mixed", headers=env.admin)).status_code == 200
    refused(await env.gw.get("/api/identity/match-reviews/nope", headers=head))
    # Identity checks its own objects too (a direct call, bypassing the gateway).
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=runtime.app), base_url="http://id"
    ) as direct:
        refused(await direct.get("/match-reviews/mixed", headers=head))
        assert (await direct.get("/match-reviews/own", headers=head)).status_code == 200
        assert (await direct.get("/match-reviews/mixed", headers=env.admin)).status_code == 200

    marta = await staff(env, "marta", ["support"])
    for customer, allowed in ((a, True), (c, False)):
        lineage = (await env.gw.get(f"/api/identity/customers/{customer}/records", headers=env.admin)).json()
        record = lineage["records"][0]
        path = f"/api/identity/records/{record['source_system']}/{record['source_id']}"
        response = await env.gw.get(path, headers=marta)
        if allowed:
            assert response.status_code == 200, response.text
        else:
            refused(response, path)
        assert (await env.gw.get(path, headers=env.admin)).status_code == 200

    # Households: read and joined; a new household of another branch's customer.
    for customer, allowed in ((a, True), (c, False)):
        household = await created(
            env.gw.post(
                "/api/identity/households",
                json={"name": "H", "members": [{"customer_id": customer, "role": "head"}]},
                headers=env.admin,
            )
        )
        response = await env.gw.get(f"/api/identity/households/{household['id']}", headers=marta)
        if allowed:
            assert response.status_code == 200, response.text
        else:
            refused(response)
    d = await new_customer(env, "d", "BCN-02")
    new = {
        "name": "H2",
        "members": [{"customer_id": b, "role": "head"}, {"customer_id": d, "role": "partner"}],
    }
    refused(await env.gw.post("/api/identity/households", json=new, headers=marta))
    merge = await env.gw.post(f"/api/identity/customers/{a}/merge", json={"other_id": c}, headers=head)
    refused(merge)


# --- the gateway's own: member logins; partner accruals ---------------------------------------------


async def test_member_logins_and_partner_accruals_check_the_branch(env: Env) -> None:
    mine, theirs = await customers(env)
    marta = await staff(env, "marta", ["support"])
    login_of = {}
    for name, customer in (("mine", mine), ("theirs", theirs)):
        body = {"email": f"{name}@example.com", "password": "member-password-1", "customer_id": customer}
        if name == "theirs":  # a login for another branch's customer, with a password the agent knows
            refused(await env.gw.post("/api/admin/members", json=body, headers=marta))
            login_of[name] = (await created(env.gw.post("/api/admin/members", json=body, headers=env.admin)))[
                "id"
            ]
        else:
            login_of[name] = (await created(env.gw.post("/api/admin/members", json=body, headers=marta)))[
                "id"
            ]
    refused(await env.gw.delete(f"/api/admin/members/{login_of['theirs']}", headers=marta))
    refused(await env.gw.delete("/api/admin/members/no-such-login", headers=marta))
    assert (await env.gw.delete(f"/api/admin/members/{login_of['mine']}", headers=marta)).status_code == 204
    assert (
        await env.gw.delete(f"/api/admin/members/{login_of['theirs']}", headers=env.admin)
    ).status_code == 204

    await created(
        env.gw.post("/api/loyalty/programs", json={"id": PROGRAM, "name": "Club"}, headers=env.admin)
    )
    partner = await created(
        env.gw.post(
            f"/api/loyalty/programs/{PROGRAM}/partners",
            json={"name": "Air", "kind": "both"},
            headers=env.admin,
        )
    )
    members = {}
    for name, customer in (("mine", mine), ("theirs", theirs)):
        member = await created(
            env.gw.post(
                f"/api/loyalty/programs/{PROGRAM}/members", json={"customer_id": customer}, headers=env.admin
            )
        )
        members[name] = member["id"]
    path = f"/api/loyalty/programs/{PROGRAM}/partners/{partner['id']}/accruals"
    accrual = {"points": 10, "reference": "flight:1"}
    refused(await env.gw.post(path, json={**accrual, "member_id": members["theirs"]}, headers=marta))
    passed(await env.gw.post(path, json={**accrual, "member_id": members["mine"]}, headers=marta))
