"""The policy covers every route of every app (deny by default), the role matrix says what it should,
and a service app refuses every protected route without a token (401 with WWW-Authenticate)."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from starlette.routing import Mount

from services.platform import build_platform
from shared.auth import policy
from shared.auth.policy import Decision, Perm, Role, decide, permissions_of, rule_for
from shared.auth.tokens import Principal

EXPLICITLY_PUBLIC = {
    "GET /health",
    "GET /ready",
    "GET /metrics",
    "GET /openapi.json",
    "GET /docs",
    "GET /docs/oauth2-redirect",
    "GET /redoc",
}
GATEWAY_PUBLIC = {
    "POST /auth/token",
    "POST /auth/member/token",
    "POST /auth/revoke",
    "GET /auth/jwks.json",
    "GET /asyncapi.json",
}
STATIC_MOUNTS = {"/console"}  # static files only (the staff console calls the protected API)


def apps(tmp_path: Path) -> dict[str, FastAPI]:
    platform = build_platform(var_dir=tmp_path, auth_enabled=True)
    out = {name: runtime.app for name, runtime in platform.runtimes.items()}
    out["gateway"] = platform.gateway()
    return out


def routes_of(app: FastAPI) -> list[tuple[str, str]]:
    found = []
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        if isinstance(route, Mount):
            assert route.path in STATIC_MOUNTS, f"unexpected mount {route.path}"
            continue
        template = context.path_format or context.path
        for method in sorted((context.methods or set()) - {"HEAD"}):
            found.append((method, str(template)))
    return found


def test_every_route_of_every_app_has_a_policy_entry(tmp_path: Path) -> None:
    missing = []
    for service, app in apps(tmp_path).items():
        for method, template in routes_of(app):
            if rule_for(service, method, template) is None:
                missing.append(f"{service}: {method} {template}")
    assert missing == [], "routes without a policy entry (denied to everyone):\n" + "\n".join(missing)


def test_no_stale_policy_entries(tmp_path: Path) -> None:
    stale = []
    for service, app in apps(tmp_path).items():
        real = set(routes_of(app))
        for method, template in policy.ROUTES[service]:
            if f"{method} {template}" in EXPLICITLY_PUBLIC:
                continue
            if method == "*":
                assert any(t == template for _, t in real), template
                continue
            if (method, template) not in real:
                stale.append(f"{service}: {method} {template}")
    assert stale == []


def test_public_routes_are_exactly_the_listed_ones() -> None:
    for service, table in policy.ROUTES.items():
        public = {f"{m} {t}" for (m, t), rule in table.items() if rule.public}
        expected = EXPLICITLY_PUBLIC | (GATEWAY_PUBLIC if service == "gateway" else set())
        assert public == expected, service


def test_an_unlisted_route_is_denied() -> None:
    assert rule_for("identity", "GET", "/secret/backdoor") is None
    assert rule_for("identity", "POST", "/customers/{customer_id}") is None  # method matters
    assert rule_for("nosuchservice", "GET", "/health") is None


def p(kind: str = "user", *roles: str, **kw: object) -> Principal:
    return Principal(sub="s", kind=kind, roles=frozenset(roles), **kw)  # type: ignore[arg-type]


ROLE_MATRIX = {
    # permission: roles that have it (everyone else must not)
    Perm.PROFILE_READ: {Role.ADMIN, Role.MARKETER, Role.SUPPORT, Role.INTEGRATION, Role.SERVICE},
    Perm.PROFILE_WRITE: {Role.ADMIN, Role.SUPPORT, Role.INTEGRATION, Role.SERVICE},
    Perm.PROFILE_MERGE: {Role.ADMIN, Role.SERVICE},
    Perm.PRIVACY: {Role.ADMIN, Role.SERVICE},
    Perm.ANALYTICS: {Role.ADMIN, Role.MARKETER, Role.ANALYST, Role.SERVICE},
    Perm.SEGMENTS_MANAGE: {Role.ADMIN, Role.MARKETER, Role.SERVICE},
    Perm.LOYALTY_WRITE: {Role.ADMIN, Role.SUPPORT, Role.INTEGRATION, Role.SERVICE},
    Perm.LOYALTY_MANAGE: {Role.ADMIN, Role.MARKETER, Role.SERVICE},
    Perm.WEBHOOKS: {Role.ADMIN, Role.INTEGRATION, Role.SERVICE},
    Perm.MEMBERS: {Role.ADMIN, Role.SUPPORT, Role.INTEGRATION},
    Perm.USERS: {Role.ADMIN},
    Perm.AUDIT: {Role.ADMIN},
    Perm.SELF_READ: {Role.MEMBER},
    Perm.SELF_WRITE: {Role.MEMBER},
}


@pytest.mark.parametrize("permission", list(ROLE_MATRIX))
def test_role_matrix(permission: Perm) -> None:
    holders = {role for role in Role if permission in permissions_of(p("user", role.value))}
    if Role.MEMBER in ROLE_MATRIX[permission]:
        holders = {
            role for role in Role if permission in permissions_of(p("member", role.value, customer_id="c"))
        }
    assert holders == ROLE_MATRIX[permission]


def test_member_tokens_reach_only_their_own_self_service_routes() -> None:
    member = p("member", "member", customer_id="A")
    own = {"customer_id": "A"}
    other = {"customer_id": "B"}
    timeline = rule_for("interactions", "GET", "/customers/{customer_id}/timeline")
    assert timeline is not None
    assert decide(member, timeline, own) is Decision.ALLOW
    assert decide(member, timeline, other) is Decision.DENY
    features = rule_for("segmentation", "GET", "/customers/{customer_id}/features")
    assert features is not None
    assert decide(member, features, own) is Decision.DENY  # not self-service
    patch = rule_for("identity", "PATCH", "/customers/{customer_id}")
    assert patch is not None
    assert decide(member, patch, own) is Decision.DENY  # members change themselves via /api/me only
    # A member token claiming admin gets nothing more.
    assert decide(p("member", "member", "admin", customer_id="A"), features, own) is Decision.DENY
    me = rule_for("gateway", "GET", "/api/me")
    assert me is not None
    assert decide(member, me, {}) is Decision.ALLOW
    assert decide(p("user", "admin"), me, {}) is Decision.DENY


def test_branch_limited_staff_need_the_branch_check() -> None:
    rule = rule_for("identity", "GET", "/customers/{customer_id}")
    assert rule is not None
    assert decide(p("user", "support", branch="MAD"), rule, {"customer_id": "x"}) is Decision.CHECK_BRANCH
    assert decide(p("user", "support"), rule, {"customer_id": "x"}) is Decision.ALLOW


def test_branch_limited_staff_lists_and_member_ids() -> None:
    marta = p("user", "support", branch="MAD")
    search = rule_for("identity", "GET", "/customers")
    assert search is not None
    assert decide(marta, search, {}) is Decision.FILTER_BRANCH
    assert policy.branch_filter(marta, search) == "MAD"
    assert decide(p("user", "support"), search, {}) is Decision.ALLOW
    assert policy.branch_filter(p("user", "support"), search) is None
    complaints = rule_for("interactions", "GET", "/complaints")
    assert complaints is not None
    assert decide(marta, complaints, {}) is Decision.DENY_BRANCH_LIST
    assert decide(marta, complaints, {}, customer_filter="c1") is Decision.CHECK_BRANCH
    assert decide(p("user", "support"), complaints, {}) is Decision.ALLOW
    assert policy.branch_filter(marta, complaints) is None
    member = rule_for("loyalty", "GET", "/programs/{program_id}/members/{member_id}")
    assert member is not None
    assert member.member_param == "member_id"
    assert decide(marta, member, {"program_id": "p", "member_id": "m"}) is Decision.CHECK_BRANCH
    assert decide(p("user", "support"), member, {"program_id": "p", "member_id": "m"}) is Decision.ALLOW
    # Every route listing customers' personal data says how a branch limit applies to it.
    listings = {
        (service, method, template): rule.listing
        for service, table in policy.ROUTES.items()
        for (method, template), rule in table.items()
        if rule.listing is not None
    }
    assert listings[("identity", "GET", "/customers")] is policy.Listing.BRANCH
    assert listings[("segmentation", "GET", "/segments/{segment_id}/members")] is policy.Listing.CUSTOMERS


def test_scopes_only_narrow() -> None:
    scoped = p("apikey", "integration", scopes=frozenset({"interactions.write", "users.manage"}))
    assert permissions_of(scoped) == {"interactions.write"}


def test_proxy_matching_prefers_literal_segments() -> None:
    matched = policy.match_service_route("segmentation", "GET", "/segments/catalogue")
    assert matched is not None
    assert matched[0] == "/segments/catalogue"
    matched = policy.match_service_route("identity", "GET", "/customers/abc/consents")
    assert matched is not None
    assert matched[0] == "/customers/{customer_id}/consents"
    assert matched[2] == {"customer_id": "abc"}
    assert policy.match_service_route("identity", "GET", "/customers/a/b/c/d") is None


def _fill(template: str) -> str:
    return re.sub(r"{[^}]+}", "x1", template)


async def test_a_service_app_refuses_every_protected_route_without_a_token(tmp_path: Path) -> None:
    checked = 0
    for service, app in apps(tmp_path).items():
        if service == "gateway":
            continue
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url=f"http://{service}"
        ) as c:
            for method, template in routes_of(app):
                rule = rule_for(service, method, template)
                assert rule is not None
                if rule.public:
                    continue
                response = await c.request(method, _fill(template))
                assert response.status_code == 401, (service, method, template, response.text)
                assert response.headers["www-authenticate"].startswith("Bearer")
                assert response.headers["content-type"] == "application/problem+json"
                checked += 1
    assert checked > 150


def test_object_ids_and_body_ids_are_checked_for_branch_limited_staff_only() -> None:
    complaint = rule_for("interactions", "POST", "/complaints/{complaint_id}/status")
    assert complaint is not None
    assert complaint.object_params == ("complaint_id",)
    assert complaint.personal_data
    limited, free = p("user", "support", branch="MAD-01"), p("user", "support")
    assert decide(limited, complaint, {"complaint_id": "c1"}) is Decision.CHECK_BRANCH
    assert decide(free, complaint, {"complaint_id": "c1"}) is Decision.ALLOW  # no lookup at all
    enrol = rule_for("loyalty", "POST", "/programs/{program_id}/members")
    assert enrol is not None
    assert enrol.body_ids == (policy.BodyId("customer_id", member=False),)
    assert decide(limited, enrol, {"program_id": "club"}) is Decision.CHECK_BRANCH
    assert decide(free, enrol, {"program_id": "club"}) is Decision.ALLOW
    pool = rule_for("loyalty", "POST", "/programs/{program_id}/households/{household_id}/pool-transfers")
    assert pool is not None
    assert pool.object_params == ("household_id",)
    assert [(b.path, b.member) for b in pool.body_ids] == [("from_member_id", True), ("to_member_id", True)]
    bulk = rule_for("interactions", "POST", "/purchases/bulk")
    assert bulk is not None
    assert bulk.body_ids == (policy.BodyId("items[].customer_id", member=False, required=True),)
    merge = rule_for("identity", "POST", "/customers/{customer_id}/merge")
    assert merge is not None
    assert merge.body_ids == (policy.BodyId("other_id", member=False),)


def test_every_owner_lookup_is_a_read_of_its_service_and_its_ids_are_used() -> None:
    for service, owners in policy.OWNERS.items():
        for param, owner in owners.items():
            assert "{" + param + "}" in owner.lookup
            if owner.service != "gateway":  # the gateway's own objects are found in its store
                assert rule_for(owner.service, "GET", owner.lookup) is not None, (service, param)
            assert any(param in r.object_params for r in policy.ROUTES[service].values()), (service, param)


def test_values_at_walks_dotted_paths_and_lists() -> None:
    document = {"left": {"id": "a"}, "members": [{"customer_id": "b"}, {"customer_id": None}, {}], "x": 1}
    assert policy.values_at(document, "left.id") == ["a"]
    assert policy.values_at(document, "members[].customer_id") == ["b"]
    assert policy.values_at(document, "x.y") == []
    assert policy.values_at(document, "missing[].id") == []
    assert policy.values_at([1], "a") == []
