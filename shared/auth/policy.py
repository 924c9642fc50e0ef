"""THE authorisation policy: the one place that decides what a caller may do.

* `ROUTES` maps every route of every service app and of the gateway — method and route path template,
  as the app declares it — to the permission it needs. A route with no entry is denied to everyone
  (`rule_for` returns None); `tests/unit/test_auth_policy.py` enumerates every app's routes and fails
  if one is missing, so a new endpoint cannot ship without a decision here.
* `ROLE_PERMISSIONS` maps roles to permissions. A token's `scope` (API keys, clients) can only
  narrow what its roles grant.
* Object level: a route whose template carries a customer id (`CUSTOMER_PARAMS`) is checked against
  the caller: a member reaches only routes marked `self_service`, and only with their own customer
  id; a staff user with a `branch` claim is checked against the customer's branch by the app's
  `customer_guard` (the gateway: cached lookups to identity; identity: its own database). Routes keyed
  by a loyalty member id (`MEMBER_PARAMS`) are checked the same way once the app's `member_guard` has
  resolved the member's customer (the gateway asks loyalty).
* Other object ids (`OWNERS`: complaints, purchases, transactions, cards, redemptions, households,
  match reviews, source records...): for a staff user with a `branch` claim the app's `object_guard`
  finds the customers the object belongs to — the gateway reads the owning service's route named by
  the object's `Owner` (cached, like the member lookup) — then checks each like a path customer id.
  It fails closed: an object whose customers cannot be found is a 403 for branch-limited staff.
  Callers without a branch claim cost no lookup at all.
* Ids in request bodies (`body=<field>` markers: `customer_id`, `to_member_id`, `items[].customer_id`,
  `other_id:customer`): for a staff user with a `branch` claim, each is checked like a path customer /
  member id (a field ending in `member_id` is a loyalty member of the path's program).
  `body=<field>!`: branch-limited staff must give the field (its alternative, e.g. a customer
  identifier, cannot be checked).
* Lists of customers' personal data, for a staff user with a `branch` claim (`branch_filter`):
  - `+branch` routes are limited to the caller's branch by the service, in its query (so pagination
    stays right): the guard puts the branch on `request.state.access`, the route reads it with
    `shared.auth.guard.ListBranch`. Identity owns the customer's branch, so only identity can do this.
  - `+customers` routes list customers' data in a service that does not know their branch: refused
    to branch-limited staff (403 problem+json saying so), unless the request is narrowed to one
    customer with a `customer_id` query parameter, which is then checked like a path id.

Services enforce this themselves (defence in depth); the gateway enforces it too, before proxying,
matching `/api/<service>/<path>` against the service's templates (`match_service_route`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from functools import cache

from shared.auth.tokens import Principal


class Role(StrEnum):
    ADMIN = "admin"
    MARKETER = "marketer"
    SUPPORT = "support"
    ANALYST = "analyst"
    INTEGRATION = "integration"
    MEMBER = "member"
    SERVICE = "service"


class Perm(StrEnum):
    PROFILE_READ = "profile.read"  # customer personal data: profiles, records, consents, notes, households
    PROFILE_WRITE = "profile.write"
    PROFILE_MERGE = "profile.merge"  # merge, unmerge, match reviews
    PRIVACY = "privacy.manage"  # right of access (export) and erasure
    CONFIG = "config.manage"  # attribute definitions, SLA policies
    INTERACTIONS_READ = "interactions.read"
    INTERACTIONS_WRITE = "interactions.write"
    COMPLAINTS = "complaints.manage"
    SEGMENTS_READ = "segments.read"
    SEGMENTS_MANAGE = "segments.manage"
    ANALYTICS = "analytics.read"  # aggregate reports, no personal data
    LOYALTY_READ = "loyalty.read"
    LOYALTY_WRITE = "loyalty.write"  # enrol, adjust, redeem, transfer
    LOYALTY_MANAGE = "loyalty.manage"  # programs, rules, tiers, rewards, partners
    WEBHOOKS = "webhooks.manage"
    MEMBERS = "members.manage"  # member credentials (customer logins)
    USERS = "users.manage"  # staff users, clients, API keys, signing keys
    AUDIT = "audit.read"
    SELF_READ = "self.read"  # a member's own data (`/api/me`)
    SELF_WRITE = "self.write"


PUBLIC = "public"
"""Pseudo-permission: no token needed (operations, documentation, the token endpoints, the JWKS)."""
PROXY = "proxy"
"""Pseudo-permission of the gateway's proxy route: decided by the target service's route."""

ROLE_PERMISSIONS: dict[Role, frozenset[Perm]] = {
    Role.ADMIN: frozenset(Perm) - {Perm.SELF_READ, Perm.SELF_WRITE},
    Role.MARKETER: frozenset(
        {
            Perm.PROFILE_READ,
            Perm.INTERACTIONS_READ,
            Perm.SEGMENTS_READ,
            Perm.SEGMENTS_MANAGE,
            Perm.ANALYTICS,
            Perm.LOYALTY_READ,
            Perm.LOYALTY_MANAGE,
        }
    ),
    Role.SUPPORT: frozenset(
        {
            Perm.PROFILE_READ,
            Perm.PROFILE_WRITE,
            Perm.INTERACTIONS_READ,
            Perm.INTERACTIONS_WRITE,
            Perm.COMPLAINTS,
            Perm.SEGMENTS_READ,
            Perm.LOYALTY_READ,
            Perm.LOYALTY_WRITE,
            Perm.MEMBERS,
        }
    ),
    Role.ANALYST: frozenset({Perm.ANALYTICS, Perm.SEGMENTS_READ}),
    Role.INTEGRATION: frozenset(
        {
            Perm.PROFILE_READ,
            Perm.PROFILE_WRITE,
            Perm.INTERACTIONS_READ,
            Perm.INTERACTIONS_WRITE,
            Perm.SEGMENTS_READ,
            Perm.LOYALTY_READ,
            Perm.LOYALTY_WRITE,
            Perm.WEBHOOKS,
            Perm.MEMBERS,
        }
    ),
    Role.MEMBER: frozenset({Perm.SELF_READ, Perm.SELF_WRITE}),
    Role.SERVICE: frozenset(Perm) - {Perm.SELF_READ, Perm.SELF_WRITE, Perm.USERS, Perm.AUDIT, Perm.MEMBERS},
}

STAFF_ROLES = frozenset({Role.ADMIN, Role.MARKETER, Role.SUPPORT, Role.ANALYST})
CUSTOMER_PARAMS = ("customer_id", "organisation_id")
MEMBER_PARAMS = ("member_id",)
"""Loyalty member ids: the object is the member's customer (resolved by the app's `member_guard`)."""


@dataclass(frozen=True, slots=True)
class Owner:
    """Which customers an object belongs to: `lookup` is a GET route of `service` (its path params
    filled from the request's), `customers` / `members` the fields of its JSON answer holding customer
    ids / loyalty member ids (dotted, `[]` for every item of a list); a member is resolved in the
    answer's `program_id`. Every customer found must be of the caller's branch; none found: refused.
    The gateway's own objects (`service` "gateway") are found in its store: `lookup` names which."""

    service: str
    lookup: str
    customers: tuple[str, ...] = ("customer_id",)
    members: tuple[str, ...] = ()


OWNERS: dict[str, dict[str, Owner]] = {
    "identity": {
        "review_id": Owner("identity", "/match-reviews/{review_id}", ("left.id", "right.id")),
        "source_id": Owner("identity", "/records/{source_system}/{source_id}"),
        "household_id": Owner("identity", "/households/{household_id}", ("members[].customer_id",)),
    },
    "interactions": {
        "purchase_id": Owner("interactions", "/purchases/{purchase_id}"),
        "complaint_id": Owner("interactions", "/complaints/{complaint_id}"),
        "interaction_id": Owner("interactions", "/interactions/{interaction_id}"),
        "survey_id": Owner("interactions", "/surveys/{survey_id}"),
        "communication_id": Owner("interactions", "/communications/{communication_id}"),
    },
    "loyalty": {
        "card_number": Owner("loyalty", "/cards/{card_number}"),
        "transaction_id": Owner("loyalty", "/transactions/{transaction_id}"),
        "redemption_id": Owner("loyalty", "/redemptions/{redemption_id}", (), ("member_id",)),
        "household_id": Owner(
            "loyalty", "/programs/{program_id}/households/{household_id}", ("members[].customer_id",)
        ),
    },
    "gateway": {"credential_id": Owner("gateway", "member-login:{credential_id}")},
}
"""Per service, the path parameters naming an object that belongs to customers, and how to find them."""


@dataclass(frozen=True, slots=True)
class BodyId:
    """A customer or loyalty member id in a request body (`body=` marker)."""

    path: str
    """Dotted, `[]` for every item of a list: `customer_id`, `items[].customer_id`."""
    member: bool
    required: bool = False
    """Branch-limited staff must give it (`!`): its alternative cannot be checked."""


class Listing(StrEnum):
    """How a route that lists customers' personal data meets a branch limit."""

    BRANCH = "branch"  # the service filters its query by the caller's branch
    CUSTOMERS = "customers"  # the service cannot: branch-limited staff are refused


@dataclass(frozen=True, slots=True)
class Rule:
    permission: str
    self_service: bool = False
    """Members may call it with their own customer id."""
    customer_param: str | None = None
    member_param: str | None = None
    listing: Listing | None = None
    """Lists customers' personal data (see `Listing`)."""
    object_params: tuple[str, ...] = ()
    """Path parameters naming objects of customers (`OWNERS`)."""
    body_ids: tuple[BodyId, ...] = ()
    """Customer / member ids in the body (`body=` markers)."""

    @property
    def public(self) -> bool:
        return self.permission == PUBLIC

    @property
    def personal_data(self) -> bool:
        """Reads or changes a customer's personal data (audited at the gateway)."""
        return (
            self.customer_param is not None
            or self.listing is not None
            or bool(self.object_params)
            or self.permission.startswith(("profile.", "self.", "privacy."))
            or self.permission in (Perm.MEMBERS,)
        )


_P = Perm
_SELF = "+self"
_LISTINGS = {"+" + listing.value: listing for listing in Listing}  # "+branch", "+customers"
_BODY = "body="

# --- the route table: service -> permission -> routes ("METHOD /template", "+self" marks self-service) --

_TABLE: dict[str, dict[str, list[str]]] = {
    "identity": {
        _P.PROFILE_READ: [
            "GET /records/{source_system}/{source_id}",
            "GET /customers +branch",
            "GET /customers/{customer_id} +self",
            "GET /customers/{customer_id}/records",
            "GET /customers/{customer_id}/changes",
            "GET /customers/{customer_id}/consents +self",
            "GET /customers/{customer_id}/consents/history +self",
            "GET /attribute-definitions",
            "GET /attribute-definitions/{name}",
            "GET /households/{household_id}",
            "GET /customers/{customer_id}/household",
            "GET /customers/{organisation_id}/contacts",
            "GET /customers/{customer_id}/notes",
        ],
        _P.PROFILE_WRITE: [
            "POST /customers",
            "POST /records",
            "PATCH /customers/{customer_id}",
            "PUT /customers/{customer_id}/consents/{channel}/{purpose} +self",
            "PUT /customers/{customer_id}/contact-preferences +self",
            "POST /households body=members[].customer_id",
            "POST /households/{household_id}/members body=customer_id",
            "DELETE /households/{household_id}/members/{customer_id}",
            "POST /customers/{organisation_id}/contacts body=customer_id",
            "DELETE /customers/{organisation_id}/contacts/{customer_id}",
            "POST /customers/{customer_id}/notes",
            "DELETE /customers/{customer_id}/notes/{note_id}",
        ],
        _P.PROFILE_MERGE: [
            "POST /customers/{customer_id}/merge body=other_id:customer",
            "POST /customers/{customer_id}/unmerge",
            "GET /match-reviews +branch",
            "GET /match-reviews/{review_id}",
            "POST /match-reviews/{review_id}/decision",
        ],
        _P.PRIVACY: ["DELETE /customers/{customer_id}", "GET /customers/{customer_id}/export"],
        _P.CONFIG: ["PUT /attribute-definitions/{name}", "DELETE /attribute-definitions/{name}"],
    },
    "interactions": {
        _P.INTERACTIONS_READ: [
            "GET /purchases/{purchase_id}",
            "GET /customers/{customer_id}/purchases +self",
            "GET /interactions/{interaction_id}",
            "GET /customers/{customer_id}/timeline +self",
            "GET /sla-policies",
            "GET /complaints +customers",
            "GET /complaints/{complaint_id}",
            "GET /customers/{customer_id}/complaints +self",
            "GET /surveys/attributes",
            "GET /surveys/{survey_id}",
            "GET /customers/{customer_id}/surveys",
            "GET /communications/{communication_id}",
            "GET /customers/{customer_id}/communications",
        ],
        _P.INTERACTIONS_WRITE: [
            "POST /purchases body=customer_id",
            "POST /purchases/bulk body=items[].customer_id!",
            "POST /purchases/{purchase_id}/payment-status",
            "POST /purchases/{purchase_id}/refunds",
            "POST /interactions body=customer_id!",
            "POST /interactions/bulk body=items[].customer_id!",
            "POST /complaints body=customer_id",
            "POST /surveys body=customer_id",
            "POST /communications body=customer_id",
            "POST /communications/{communication_id}/delivery",
        ],
        _P.COMPLAINTS: [
            "POST /complaints/sla-scan",
            "POST /complaints/{complaint_id}/status",
            "POST /complaints/{complaint_id}/assign",
            "POST /complaints/{complaint_id}/messages",
        ],
        _P.ANALYTICS: [
            "GET /complaints/sla-report",
            "GET /reports/contacts",
            "GET /reports/satisfaction",
            "GET /reports/complaints",
        ],
        _P.PRIVACY: ["GET /customers/{customer_id}/export"],
        _P.CONFIG: ["PUT /sla-policies/{channel}/{priority}"],
    },
    "segmentation": {
        _P.SEGMENTS_READ: [
            "GET /customers/{customer_id}/features",
            "GET /segments/catalogue",
            "POST /segments/preview +customers",
            "GET /segments",
            "GET /segments/{segment_id}",
            "GET /segments/{segment_id}/members +customers",
            "GET /segments/{segment_id}/history",
            "GET /customers/{customer_id}/segments",
            "GET /customers/{customer_id}/value",
            "GET /customers/{customer_id}/cluster",
            "GET /playbooks",
            "GET /playbooks/{playbook_id}",
            "GET /customers/{customer_id}/next-best-action",
        ],
        _P.SEGMENTS_MANAGE: [
            "POST /features/recompute",
            "POST /segments",
            "PUT /segments/{segment_id}",
            "POST /segments/{segment_id}/members",
            "DELETE /segments/{segment_id}",
            "POST /value/recompute",
            "POST /clusters/runs",
            "POST /playbooks",
            "POST /playbooks/learn",
            "PUT /playbooks/{playbook_id}",
            "DELETE /playbooks/{playbook_id}",
        ],
        _P.INTERACTIONS_WRITE: ["POST /customers/{customer_id}/defection"],
        _P.ANALYTICS: [
            "GET /reports/defections",
            "GET /reports/risk-value-matrix",
            "GET /reports/rfm-distribution",
            "GET /reports/ladder",
            "GET /analytics/cohorts",
            "GET /analytics/retention",
            "GET /analytics/new-vs-loyal",
            "GET /analytics/revenue-by-tier",
            "GET /analytics/defections",
            "GET /clusters/features",
            "GET /clusters/runs/latest",
            "GET /clusters/runs/{run_id}",
        ],
        _P.PRIVACY: ["GET /customers/{customer_id}/export"],
    },
    "loyalty": {
        _P.LOYALTY_READ: [
            "GET /programs",
            "GET /programs/{program_id}",
            "GET /programs/{program_id}/members/{member_id}",
            "GET /cards/{card_number}",
            "GET /programs/{program_id}/members/{member_id}/transactions",
            "GET /transactions/{transaction_id}",
            "GET /ledger/check",
            "GET /members/{customer_id}/balance +self",
            "GET /members/{customer_id}/transactions +self",
            "GET /members/{customer_id}/memberships +self",
            "GET /programs/{program_id}/households/{household_id}",
            "GET /programs/{program_id}/rewards",
            "GET /programs/{program_id}/rewards/{reward_id}",
            "GET /programs/{program_id}/members/{member_id}/catalogue",
            "GET /programs/{program_id}/rewards/{reward_id}/quote",
            "GET /programs/{program_id}/members/{member_id}/redemptions",
            "GET /redemptions/{redemption_id}",
            "GET /programs/{program_id}/partners",
            "GET /programs/{program_id}/partners/{partner_id}",
            "GET /programs/{program_id}/rules",
            "GET /programs/{program_id}/rules/{rule_id}",
            "POST /programs/{program_id}/dry-run",
            "GET /programs/{program_id}/tiers",
            "GET /programs/{program_id}/members/{member_id}/tier",
        ],
        _P.LOYALTY_WRITE: [
            "POST /programs/{program_id}/members body=customer_id",
            "PATCH /programs/{program_id}/members/{member_id}",
            "POST /programs/{program_id}/members/{member_id}/adjustments",
            "POST /programs/{program_id}/members/{member_id}/transfers body=to_member_id",
            "POST /transactions/{transaction_id}/reversal",
            "POST /programs/{program_id}/households body=owner_member_id",
            "POST /programs/{program_id}/households/{household_id}/members body=member_id",
            "DELETE /programs/{program_id}/households/{household_id}/members/{member_id}",
            "POST /programs/{program_id}/households/{household_id}/pool-transfers"
            " body=from_member_id body=to_member_id",
            "POST /programs/{program_id}/members/{member_id}/redemptions",
            "POST /redemptions/{redemption_id}/confirm",
            "POST /redemptions/{redemption_id}/cancel",
            "POST /programs/{program_id}/partners/{partner_id}/accruals body=member_id",
            "POST /programs/{program_id}/members/{member_id}/bonus-events",
        ],
        _P.LOYALTY_MANAGE: [
            "POST /programs",
            "POST /programs/{program_id}/rewards",
            "PUT /programs/{program_id}/rewards/{reward_id}",
            "POST /programs/{program_id}/partners",
            "POST /programs/{program_id}/rules",
            "PUT /programs/{program_id}/rules/{rule_id}",
            "DELETE /programs/{program_id}/rules/{rule_id}",
            "PUT /programs/{program_id}/tiers",
        ],
        _P.ANALYTICS: [
            "GET /reports/liability",
            "GET /programs/{program_id}/reports/expiring",
            "GET /programs/{program_id}/reports/issuance",
            "GET /programs/{program_id}/reports/penetration",
            "GET /programs/{program_id}/reports/active-members",
        ],
        _P.PRIVACY: ["GET /members/{customer_id}/export"],
    },
    "gateway": {
        PUBLIC: [
            "GET /asyncapi.json",
            "POST /auth/token",
            "POST /auth/member/token",
            "POST /auth/revoke",
            "GET /auth/jwks.json",
        ],
        PROXY: ["* /api/{service}/{path}"],
        _P.PROFILE_READ: ["GET /api/customers/{customer_id}/360"],
        _P.PRIVACY: ["GET /api/customers/{customer_id}/export"],
        _P.WEBHOOKS: [
            "GET /api/webhooks/event-types",
            "POST /api/webhooks/subscriptions",
            "GET /api/webhooks/subscriptions",
            "GET /api/webhooks/subscriptions/{subscription_id}",
            "DELETE /api/webhooks/subscriptions/{subscription_id}",
            "GET /api/webhooks/subscriptions/{subscription_id}/deliveries",
        ],
        _P.SELF_READ: ["GET /api/me", "GET /api/me/timeline", "GET /api/me/points", "GET /api/me/rewards"],
        _P.SELF_WRITE: ["PATCH /api/me", "POST /api/me/rewards/{reward_id}/redeem"],
        _P.USERS: [
            "GET /api/admin/roles",
            "GET /api/admin/users",
            "POST /api/admin/users",
            "PATCH /api/admin/users/{username}",
            "GET /api/admin/clients",
            "POST /api/admin/clients",
            "DELETE /api/admin/clients/{client_id}",
            "GET /api/admin/api-keys",
            "POST /api/admin/api-keys",
            "DELETE /api/admin/api-keys/{key_id}",
            "POST /api/admin/signing-keys/rotate",
        ],
        _P.MEMBERS: [
            "GET /api/admin/members +customers",
            "POST /api/admin/members body=customer_id",
            "DELETE /api/admin/members/{credential_id}",
        ],
        _P.AUDIT: ["GET /api/admin/audit +customers"],
    },
}

# Operations and documentation: public on every app.
OPERATIONS = (
    "GET /health",
    "GET /ready",
    "GET /metrics",
    "GET /openapi.json",
    "GET /docs",
    "GET /docs/oauth2-redirect",
    "GET /redoc",
)

_PARAM = re.compile(r"{([a-zA-Z_][a-zA-Z0-9_]*)(?::[a-z]+)?}")


def _customer_param(template: str) -> str | None:
    names = _PARAM.findall(template)
    return next((name for name in names if name in CUSTOMER_PARAMS), None)


def _member_param(template: str) -> str | None:
    names = _PARAM.findall(template)
    return next((name for name in names if name in MEMBER_PARAMS), None)


def _object_params(service: str, template: str) -> tuple[str, ...]:
    owners = OWNERS.get(service, {})
    return tuple(name for name in _PARAM.findall(template) if name in owners)


def _body_id(marker: str) -> BodyId:
    """`body=customer_id`, `body=items[].customer_id!`, `body=other_id:customer` (kind given)."""
    path = marker.removeprefix(_BODY)
    required = path.endswith("!")
    path, _, kind = path.removesuffix("!").partition(":")
    field = path.rsplit(".", 1)[-1]
    kind = kind or (
        "member" if field.endswith("member_id") else "customer" if field in CUSTOMER_PARAMS else ""
    )
    if kind not in ("customer", "member"):
        raise ValueError(f"{marker}: not a customer or member id field (say which: :customer or :member)")
    return BodyId(path, member=kind == "member", required=required)


def _build() -> dict[str, dict[tuple[str, str], Rule]]:
    routes: dict[str, dict[tuple[str, str], Rule]] = {}
    for service, by_permission in _TABLE.items():
        table: dict[tuple[str, str], Rule] = {}
        for entry in OPERATIONS:
            method, path = entry.split(" ")
            table[(method, path)] = Rule(PUBLIC)
        for permission, entries in by_permission.items():
            for entry in entries:
                parts = entry.split(" ")
                method, path = parts[0], parts[1]
                key = (method, path)
                if key in table and not table[key].public:
                    raise ValueError(f"{service}: {entry} has two policy entries")
                listings = [_LISTINGS[flag] for flag in parts[2:] if flag in _LISTINGS]
                table[key] = Rule(
                    str(permission),
                    self_service=_SELF in parts[2:],
                    customer_param=_customer_param(path),
                    member_param=_member_param(path),
                    listing=listings[0] if listings else None,
                    object_params=_object_params(service, path),
                    body_ids=tuple(_body_id(flag) for flag in parts[2:] if flag.startswith(_BODY)),
                )
        routes[service] = table
    return routes


ROUTES: Mapping[str, Mapping[tuple[str, str], Rule]] = _build()


def rule_for(service: str, method: str, template: str) -> Rule | None:
    """The rule of a route, or None: no entry, no access."""
    table = ROUTES.get(service, {})
    method = "GET" if method == "HEAD" else method
    return table.get((method, template)) or table.get(("*", template))


@cache
def _compiled(service: str) -> list[tuple[int, re.Pattern[str], str, str]]:
    out = []
    for method, template in ROUTES.get(service, {}):
        pattern = "^" + _PARAM.sub(lambda m: f"(?P<{m.group(1)}>[^/]+)", template) + "$"
        literal = len([s for s in template.split("/") if s and "{" not in s])
        out.append((literal, re.compile(pattern), method, template))
    out.sort(key=lambda item: -item[0])  # most specific first: /segments/catalogue before /segments/{id}
    return out


def match_service_route(service: str, method: str, path: str) -> tuple[str, Rule, dict[str, str]] | None:
    """The template, rule and path parameters a service route would match (the gateway's proxy)."""
    method = "GET" if method == "HEAD" else method
    for _, pattern, rule_method, template in _compiled(service):
        if rule_method != method:
            continue
        found = pattern.match(path)
        if found:
            return template, ROUTES[service][(rule_method, template)], found.groupdict()
    return None


def permissions_of(principal: Principal) -> frozenset[str]:
    granted: set[str] = set()
    for role in principal.roles:
        try:
            granted |= {str(p) for p in ROLE_PERMISSIONS[Role(role)]}
        except ValueError:
            continue  # an unknown role grants nothing
    if principal.kind == "member":
        granted &= {Perm.SELF_READ, Perm.SELF_WRITE}  # whatever roles a member token claims
    if principal.scopes is not None:
        granted &= set(principal.scopes)
    return frozenset(granted)


class Decision(StrEnum):
    ALLOW = "allow"
    DENY = "deny"
    CHECK_BRANCH = "check_branch"
    FILTER_BRANCH = "filter_branch"
    DENY_BRANCH_LIST = "deny_branch_list"


def decide(
    principal: Principal,
    rule: Rule,
    path_params: Mapping[str, str],
    *,
    customer_filter: str | None = None,
) -> Decision:
    """Role level, then object level (members: their own id only).

    * `CHECK_BRANCH`: allowed if the customer (a path id, the customer of a path member id, or for a
      `+customers` list the one customer the request is narrowed to, `customer_filter`) belongs to
      the caller's branch (the app's customer / member guard decides); so must the customers of
      path object ids (`OWNERS`, the app's object guard) and the customer / member ids in the body
      (`body=` markers).
    * `FILTER_BRANCH`: allowed, the service limits the list to the caller's branch (`branch_filter`).
    * `DENY_BRANCH_LIST`: a list the service cannot limit to a branch, asked by branch-limited staff.
    """
    customer_id = path_params.get(rule.customer_param) if rule.customer_param else None
    if principal.kind == "member":
        if rule.permission in (Perm.SELF_READ, Perm.SELF_WRITE):
            return Decision.ALLOW if rule.permission in permissions_of(principal) else Decision.DENY
        if rule.self_service and customer_id is not None and customer_id == principal.customer_id:
            return Decision.ALLOW
        return Decision.DENY
    if rule.permission not in permissions_of(principal):
        return Decision.DENY
    if principal.branch is not None:
        if customer_id is not None:
            return Decision.CHECK_BRANCH
        if rule.member_param is not None and path_params.get(rule.member_param) is not None:
            return Decision.CHECK_BRANCH
        if any(path_params.get(name) for name in rule.object_params) or rule.body_ids:
            return Decision.CHECK_BRANCH
        if rule.listing is Listing.BRANCH:
            return Decision.FILTER_BRANCH
        if rule.listing is Listing.CUSTOMERS:
            return Decision.CHECK_BRANCH if customer_filter else Decision.DENY_BRANCH_LIST
    return Decision.ALLOW


def owner_of(service: str, param: str) -> Owner | None:
    """How to find the customers of the object a path parameter of `service` names."""
    return OWNERS.get(service, {}).get(param)


def values_at(document: object, path: str) -> list[object]:
    """The values at a dotted path of a JSON document, `[]` for every item of a list (missing: none)."""
    found: list[object] = [document]
    for part in path.split("."):
        every = part.endswith("[]")
        key = part.removesuffix("[]")
        step: list[object] = []
        for item in found:
            value = item.get(key) if isinstance(item, dict) else None
            if value is None:
                continue
            if every:
                step += value if isinstance(value, list) else []
            else:
                step.append(value)
        found = step
    return found


def branch_filter(principal: Principal | None, rule: Rule) -> str | None:
    """The branch a `+branch` list must be limited to for this caller (None: no limit)."""
    if principal is None or principal.kind == "member" or rule.listing is not Listing.BRANCH:
        return None
    return principal.branch


def role_matrix() -> dict[str, list[str]]:
    """Role -> permissions, for the README and `GET /api/admin/roles`."""
    return {role.value: sorted(p.value for p in perms) for role, perms in ROLE_PERMISSIONS.items()}


def valid_roles(roles: Iterable[str]) -> list[str]:
    out = []
    for role in roles:
        Role(role)  # ValueError for unknown roles
        out.append(role)
    return out
