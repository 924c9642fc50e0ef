"""The app-level dependency every service app and the gateway run before any endpoint
(installed by `shared.http.create_app`): authenticate the caller, then ask `shared.auth.policy`.

* No policy entry for the matched route: 403 for everyone (deny by default).
* Public routes (operations, documentation, token endpoints, JWKS): no token needed.
* Otherwise a valid `Authorization: Bearer <JWT>` is required — 401 problem+json with
  `WWW-Authenticate: Bearer` when it is missing or invalid; 403 when the policy says no.

What an app needs is in its `AuthContext` (`app.state.auth`): the verifier (a local key set in
embedded mode, the gateway's JWKS in distributed mode), plus optional hooks: `authenticate` (the
gateway: API keys), `customer_guard` (branch limits), `member_guard` (branch limits on routes keyed by
a loyalty member id: the gateway resolves the member's customer), `object_guard` (branch limits on
routes keyed by another object of customers, `policy.OWNERS`: the gateway asks the owning service).
Customer / member ids in the body (`body=` markers) are checked for branch-limited staff with the
customer / member guards (the body is read here; Starlette keeps it for the endpoint).

Authentication and permission are decided before the request body is looked at: FastAPI parses a
JSON body before it runs any dependency, so `install_authentication_first` makes a body error (422,
400, 413) on a protected route answer 401 / 403 first when the caller may not call it at all.

Lists of customers (`policy.Listing`): a `+branch` route reads the caller's branch limit with the
`ListBranch` dependency and filters its query by it; a `+customers` route is refused to
branch-limited staff here (unless narrowed to one customer of their branch by `?customer_id=`).
"""

from __future__ import annotations

import contextvars
import json
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator, Mapping
from dataclasses import dataclass, replace
from typing import Annotated, Any, cast

import httpx
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from shared.auth import policy
from shared.auth.tokens import InvalidToken, Principal, TokenVerifier
from shared.context import actor_var
from shared.errors import DomainError, Forbidden, NotFound, Unauthorized
from shared.logging import get_logger

log = get_logger(__name__)

principal_var: contextvars.ContextVar[Principal | None] = contextvars.ContextVar("principal", default=None)

Authenticator = Callable[[Request], Awaitable[Principal | None]]
CustomerGuard = Callable[[Principal, str], Awaitable[None]]
"""Raises Forbidden (or NotFound) when `principal` may not see customer `customer_id`."""
MemberGuard = Callable[[Principal, str, Mapping[str, Any]], Awaitable[None]]
"""Raises Forbidden when `principal` may not see loyalty member `member_id` (path params given)."""
ObjectGuard = Callable[[Principal, policy.Owner, Mapping[str, Any]], Awaitable[None]]
"""Raises Forbidden when `principal` may not see the object `owner` finds (path params given); must
fail closed (Forbidden) when the object's customers cannot be found."""


@dataclass
class AuthContext:
    service: str
    enabled: bool
    verifier: TokenVerifier | None = None
    authenticate: Authenticator | None = None
    customer_guard: CustomerGuard | None = None
    member_guard: MemberGuard | None = None
    object_guard: ObjectGuard | None = None
    realm: str = "crm"


@dataclass(frozen=True, slots=True)
class Access:
    """What the guard decided, kept on `request.state.access` (the gateway's audit log reads it)."""

    principal: Principal | None
    rule: policy.Rule
    template: str
    customer_id: str | None
    branch: str | None = None
    """A `+branch` list must be limited to this branch (`ListBranch`)."""


def route_template(request: Request) -> str:
    """The matched route's full path template (`/customers/{customer_id}`), prefixes included."""
    scope = request.scope
    try:
        from fastapi.routing import _get_scope_effective_route_context

        context = _get_scope_effective_route_context(scope)
    except ImportError:  # pragma: no cover - other FastAPI versions
        context = None
    if context is not None:
        starlette_route = getattr(context, "starlette_route", None)
        template = getattr(starlette_route, "path_format", None) or getattr(context, "path_format", None)
        if template:
            return str(template)
    route = scope.get("route")
    return str(getattr(route, "path_format", None) or getattr(route, "path", ""))


def _challenge(detail: str, realm: str, *, error: str | None = "invalid_token") -> Unauthorized:
    header = f'Bearer realm="{realm}"'
    if error:
        header += f', error="{error}", error_description="{detail}"'
    exc = Unauthorized(detail)
    exc.headers = {"WWW-Authenticate": header}
    return exc


def bearer_token(request: Request) -> str | None:
    value = request.headers.get("authorization")
    if not value:
        return None
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def context_of(request: Request) -> AuthContext:
    auth: AuthContext | None = getattr(request.app.state, "auth", None)
    if auth is None:
        # An app nobody configured: on unless the platform settings switch it off (development).
        from shared.settings import PlatformSettings

        auth = AuthContext(service=getattr(request.app.state, "service_name", "unknown"), enabled=True)
        auth.enabled = PlatformSettings().auth_enabled
        request.app.state.auth = auth
    return auth


async def authenticate(request: Request, auth: AuthContext) -> Principal:
    if auth.authenticate is not None:
        found = await auth.authenticate(request)
        if found is not None:
            return found
    token = bearer_token(request)
    if token is None:
        raise _challenge("a bearer token is required", auth.realm, error=None)
    if auth.verifier is None:
        raise _challenge("this service cannot verify tokens (no key set configured)", auth.realm)
    try:
        return await auth.verifier.verify(token)
    except InvalidToken as exc:
        raise _challenge(str(exc), auth.realm) from exc


async def authorize(request: Request) -> None:
    """The dependency. Sets `request.state.access`, `principal_var` and the audit actor (the request
    context middleware resets both when the request ends)."""
    auth = context_of(request)
    if not auth.enabled:
        request.state.auth_checked = True
        return
    template = route_template(request)
    rule = policy.rule_for(auth.service, request.method, template)
    if rule is None:
        log.warning("route_without_policy", service=auth.service, method=request.method, route=template)
        raise Forbidden("no access policy covers this route")
    if rule.public:
        request.state.auth_checked = True
        return
    principal = await authenticate(request, auth)
    params: dict[str, Any] = dict(request.path_params)
    service = auth.service
    if rule.permission == policy.PROXY:
        service = str(params.get("service", ""))
        matched = policy.match_service_route(service, request.method, "/" + str(params.get("path", "")))
        if matched is None:
            raise NotFound("no such route")
        template, rule, params = matched
        template = f"/api/{service}{template}"
    customer_id = str(params[rule.customer_param]) if rule.customer_param in params else None
    if customer_id is None and rule.permission in (policy.Perm.SELF_READ, policy.Perm.SELF_WRITE):
        customer_id = principal.customer_id
    customer_filter = _customer_filter(request) if rule.listing is policy.Listing.CUSTOMERS else None
    access = Access(principal, rule, template, customer_id or customer_filter)
    request.state.access = access
    principal_var.set(principal)
    actor_var.set(principal.actor)
    decision = policy.decide(principal, rule, params, customer_filter=customer_filter)
    if decision is policy.Decision.DENY:
        raise Forbidden("not allowed for this caller")
    if decision is policy.Decision.DENY_BRANCH_LIST:
        raise Forbidden(
            f"this list is not limited to a branch, and this caller is limited to branch "
            f"{principal.branch!r}: narrow it to one customer (customer_id) or use a branch-filtered search"
        )
    if decision is policy.Decision.FILTER_BRANCH:
        request.state.access = replace(access, branch=policy.branch_filter(principal, rule))
    if decision is policy.Decision.CHECK_BRANCH:
        # Branches are identity's data: the gateway (cached lookups) and identity check them; the
        # other services, which hold no branch, rely on those two checks.
        member_id = params.get(rule.member_param) if rule.member_param else None
        if customer_id is not None or customer_filter is not None:
            if auth.customer_guard:
                await auth.customer_guard(principal, str(customer_id or customer_filter))
        elif member_id is not None and auth.member_guard:
            await auth.member_guard(principal, str(member_id), params)
        if auth.object_guard:
            for name in rule.object_params:
                owner = policy.owner_of(service, name)
                if owner is not None and params.get(name):
                    await auth.object_guard(principal, owner, params)
        if rule.body_ids:
            await _check_body_ids(request, auth, principal, rule, params)
    request.state.auth_checked = True


async def _check_body_ids(
    request: Request, auth: AuthContext, principal: Principal, rule: policy.Rule, params: Mapping[str, Any]
) -> None:
    """The customer / member ids a branch-limited caller puts in the body (`body=` markers). A body
    that is not JSON is left to the route (it answers 422); an id that is not a string cannot be
    checked: 403."""
    try:
        document = json.loads(await request.body() or b"null")
    except (ValueError, RuntimeError):  # not JSON, or already consumed by a failed body validation
        return
    if not isinstance(document, dict):
        return
    checked: set[tuple[bool, str]] = set()
    for body_id in rule.body_ids:
        values = policy.values_at(document, body_id.path)
        if body_id.required and "[]" in body_id.path:
            items = policy.values_at(document, body_id.path.rsplit(".", 1)[0])
            if len(values) < len(items):
                raise Forbidden(
                    f"{body_id.path} is required for a caller limited to branch {principal.branch!r}"
                )
        elif body_id.required and not values:
            raise Forbidden(f"{body_id.path} is required for a caller limited to branch {principal.branch!r}")
        for value in values:
            if not isinstance(value, str):
                raise Forbidden(f"{body_id.path} cannot be checked against the caller's branch")
            if (body_id.member, value) in checked:
                continue
            checked.add((body_id.member, value))
            if body_id.member:
                if auth.member_guard:
                    await auth.member_guard(principal, value, params)
            elif auth.customer_guard:
                await auth.customer_guard(principal, value)


def _customer_filter(request: Request) -> str | None:
    """The one customer a `+customers` list is narrowed to (`?customer_id=`); two different ones: 403."""
    values = set(request.query_params.getlist("customer_id"))
    if len(values) > 1:
        raise Forbidden("give at most one customer_id")
    return next(iter(values), None) or None


async def list_branch(request: Request) -> str | None:
    """The branch a `+branch` list must be limited to (None: no limit), as the guard decided."""
    access: Access | None = getattr(request.state, "access", None)
    return access.branch if access is not None else None


ListBranch = Annotated[str | None, Depends(list_branch)]
_Handler = Callable[[Request, Exception], Awaitable[Response]]


def install_authentication_first(app: FastAPI) -> None:
    """Body errors happen before the guard ran (FastAPI parses the body first): decide authentication
    and permission first, so a caller without a token gets 401 and one without the permission 403,
    never a 422 / 400 / 413 about a body of a route it may not call. Call after the problem handlers
    are installed."""
    validation = cast(_Handler, app.exception_handlers[RequestValidationError])
    http = cast(_Handler, app.exception_handlers[StarletteHTTPException])
    domain = cast(_Handler, app.exception_handlers[DomainError])

    async def refused(request: Request) -> Response | None:
        if getattr(request.state, "auth_checked", False) or request.scope.get("route") is None:
            return None
        try:
            await authorize(request)
        except DomainError as exc:
            return await domain(request, exc)
        return None

    async def on_validation(request: Request, exc: Exception) -> Response:
        return await refused(request) or await validation(request, exc)

    async def on_http(request: Request, exc: Exception) -> Response:
        if isinstance(exc, StarletteHTTPException) and exc.status_code in (400, 413, 422):
            early = await refused(request)
            if early is not None:
                return early
        return await http(request, exc)

    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)


def current_principal() -> Principal | None:
    return principal_var.get()


class ForwardingAuth(httpx.Auth):
    """For service-to-service calls: forward the caller's token; outside a request (or for an API-key
    caller at the gateway, already swapped for a JWT) use `fallback()` — a service principal's token."""

    def __init__(self, fallback: Callable[[], Awaitable[str | None]] | None = None) -> None:
        self.fallback = fallback

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        raise RuntimeError("ForwardingAuth is for async clients")

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        if "authorization" not in request.headers:
            principal = principal_var.get()
            token = principal.token if principal is not None else None
            if token is None and self.fallback is not None:
                token = await self.fallback()
            if token:
                request.headers["authorization"] = f"Bearer {token}"
        yield request
