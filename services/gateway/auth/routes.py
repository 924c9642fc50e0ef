"""Token endpoints (OAuth2), the JWKS, and the admin API for users, clients, API keys, member logins,
signing keys and the audit log."""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, ConfigDict, EmailStr, Field
from sqlalchemy import and_, select

from services.gateway.auth.models import audit_log
from services.gateway.auth.store import AuthStore, IssuedTokens
from shared.auth import policy
from shared.auth.guard import Access
from shared.errors import PROBLEM_JSON, Forbidden, InvalidInput, Problem, Unauthorized

router = APIRouter(tags=["authentication"])
admin = APIRouter(prefix="/api/admin", tags=["administration"])

PROBLEM = {"model": Problem, "content": {PROBLEM_JSON: {}}}
TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
CUSTOMER_ID_TOKEN_TYPE = "urn:crm:params:customer-id"


def store_of(request: Request) -> AuthStore:
    store: AuthStore | None = getattr(request.app.state, "auth_store", None)
    if store is None:
        raise Forbidden("authentication is switched off on this gateway")
    return store


def _caller(request: Request) -> str | None:
    access: Access | None = getattr(request.state, "access", None)
    return access.principal.actor if access is not None and access.principal is not None else None


async def _form(request: Request) -> dict[str, str]:
    body = await request.body()
    if request.headers.get("content-type", "").startswith("application/json"):
        try:
            data = json.loads(body or b"{}")
        except ValueError as exc:
            raise InvalidInput("body", "not valid JSON") from exc
        if not isinstance(data, dict):
            raise InvalidInput("body", "expected an object")
        return {str(k): str(v) for k, v in data.items() if v is not None}
    return {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items() if v}


def _basic(request: Request) -> tuple[str, str] | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip()).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    client_id, sep, secret = decoded.partition(":")
    return (client_id, secret) if sep else None


def _require(form: dict[str, str], *names: str) -> list[str]:
    missing = [n for n in names if not form.get(n)]
    if missing:
        raise InvalidInput(f"body.{missing[0]}", "required")
    return [form[n] for n in names]


def _tokens(issued: IssuedTokens) -> Response:
    return Response(
        json.dumps(issued.body()),
        media_type="application/json",
        headers={"cache-control": "no-store", "pragma": "no-cache"},
    )


TOKEN_RESPONSE = {
    "description": "An access token (and, for password logins, a rotating refresh token)",
    "content": {
        "application/json": {
            "example": {
                "access_token": "eyJhbGciOiJFZERTQSIsImtpZCI6IjFhMmIzYyJ9...",
                "token_type": "Bearer",
                "expires_in": 900,
                "refresh_token": "rt_6f1c...9a.Zk3...",
            }
        }
    },
}


def _form_body(examples: dict[str, dict[str, str]]) -> dict[str, Any]:
    schema = {"type": "object", "properties": {k: {"type": "string"} for e in examples.values() for k in e}}
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/x-www-form-urlencoded": {
                    "schema": schema,
                    "examples": {name: {"value": value} for name, value in examples.items()},
                },
                "application/json": {
                    "schema": schema,
                    "examples": {name: {"value": value} for name, value in examples.items()},
                },
            },
        }
    }


@router.post(
    "/auth/token",
    summary="Get an access token (OAuth2: password, client credentials, refresh, token exchange)",
    description=(
        "`grant_type=password` (staff users), `client_credentials` (integration clients: `client_id` "
        "and `client_secret` in the form or HTTP Basic), `refresh_token` (rotates: the old refresh "
        "token is spent; using a spent one again revokes the whole session) or the token-exchange "
        f"grant `{TOKEN_EXCHANGE}` (a trusted client with `members.manage` gets a member token for "
        f"`subject_token=<customer id>`, `subject_token_type={CUSTOMER_ID_TOKEN_TYPE}`). Form-encoded "
        "(RFC 6749) or JSON. Access tokens are EdDSA-signed JWTs; verify them with `/auth/jwks.json`."
    ),
    responses={200: TOKEN_RESPONSE, 401: {**PROBLEM, "description": "Bad credentials"}},
    openapi_extra=_form_body(
        {
            "password": {"grant_type": "password", "username": "ana", "password": "correct horse battery"},
            "client_credentials": {
                "grant_type": "client_credentials",
                "client_id": "cli_pos_system",
                "client_secret": "s3cr3t...",
            },
            "refresh_token": {"grant_type": "refresh_token", "refresh_token": "rt_6f1c...9a.Zk3..."},
            "token_exchange": {
                "grant_type": TOKEN_EXCHANGE,
                "client_id": "cli_member_app",
                "client_secret": "s3cr3t...",
                "subject_token": "0f8b6c1e-4c7a-4a5e-9d55-2f0c1d9e7a10",
                "subject_token_type": CUSTOMER_ID_TOKEN_TYPE,
            },
        }
    ),
)
async def token(request: Request) -> Response:
    store = store_of(request)
    form = await _form(request)
    grant = form.get("grant_type", "")
    if grant == "password":
        username, password = _require(form, "username", "password")
        return _tokens(await store.login_user(username, password))
    if grant == "refresh_token":
        (refresh,) = _require(form, "refresh_token")
        return _tokens(await store.refresh(refresh))
    if grant in ("client_credentials", TOKEN_EXCHANGE):
        credentials = _basic(request) or (form.get("client_id", ""), form.get("client_secret", ""))
        if not credentials[0] or not credentials[1]:
            raise Unauthorized("client authentication required")
        issued = await store.client_token(credentials[0], credentials[1], form.get("scope"))
        if grant == "client_credentials":
            return _tokens(issued)
        client = await request.app.state.auth.verifier.verify(issued.access_token)
        if policy.Perm.MEMBERS not in policy.permissions_of(client):
            raise Forbidden("this client may not act for members")
        subject, subject_type = _require(form, "subject_token", "subject_token_type")
        if subject_type != CUSTOMER_ID_TOKEN_TYPE:
            raise InvalidInput("body.subject_token_type", f"only {CUSTOMER_ID_TOKEN_TYPE} is supported")
        member = await store.member_principal_for(subject)
        access, ttl = store.issue(member)
        return _tokens(IssuedTokens(access, ttl))
    raise InvalidInput("body.grant_type", "password, client_credentials, refresh_token or token exchange")


@router.post(
    "/auth/member/token",
    summary="Member login: a customer's own token (e-mail and password)",
    description=(
        "For customer-facing apps. The token reaches only the member's own data (`/api/me...` and "
        "the service routes marked self-service, with the member's own customer id). Refresh it with "
        "`/auth/token` and `grant_type=refresh_token`."
    ),
    responses={200: TOKEN_RESPONSE, 401: {**PROBLEM, "description": "Bad credentials"}},
    openapi_extra=_form_body(
        {"member": {"grant_type": "password", "username": "ana@example.com", "password": "my own secret"}}
    ),
)
async def member_token(request: Request) -> Response:
    form = await _form(request)
    username, password = _require(form, "username", "password")
    return _tokens(await store_of(request).login_member(username, password))


@router.post(
    "/auth/revoke",
    summary="Revoke a refresh token (log out): its whole session ends",
    status_code=200,
    openapi_extra=_form_body({"revoke": {"token": "rt_6f1c...9a.Zk3..."}}),
)
async def revoke(request: Request) -> dict[str, str]:
    form = await _form(request)
    (value,) = _require(form, "token")
    await store_of(request).revoke_refresh(value)
    return {"status": "revoked"}


@router.get(
    "/auth/jwks.json",
    summary="The public keys access tokens are signed with (JWKS)",
    description="Public. Services verify tokens with it; a retired key stays until its tokens expire.",
)
async def jwks(request: Request) -> Response:
    return Response(
        json.dumps(store_of(request).jwks()),
        media_type="application/json",
        headers={"cache-control": "public, max-age=60"},
    )


# --- admin API ---------------------------------------------------------------------------------------


class UserIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "username": "lucia",
                    "password": "a long passphrase",
                    "roles": ["support"],
                    "branch": "MAD-01",
                }
            ]
        },
    )
    username: str = Field(min_length=2, max_length=100, pattern=r"^[A-Za-z0-9_.@-]+$")
    password: str = Field(min_length=12, max_length=200)
    roles: list[policy.Role] = Field(min_length=1)
    branch: str | None = Field(default=None, max_length=64, description="Limit the user to one branch")


class UserPatch(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"disabled": True}, {"roles": ["marketer"]}]}
    )
    disabled: bool | None = None
    roles: list[policy.Role] | None = None
    branch: str | None = Field(default=None, max_length=64)
    password: str | None = Field(default=None, min_length=12, max_length=200)


class ClientIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"name": "POS system", "roles": ["integration"], "scopes": None}]},
    )
    name: str = Field(min_length=1, max_length=200)
    roles: list[policy.Role] = Field(min_length=1)
    scopes: list[str] | None = Field(default=None, description="Narrow the roles to these permissions")
    client_id: str | None = Field(default=None, max_length=100, pattern=r"^[A-Za-z0-9_.-]+$")


class ApiKeyIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "nightly import",
                    "roles": ["integration"],
                    "scopes": ["interactions.write"],
                    "expires_at": "2027-06-30T00:00:00Z",
                }
            ]
        },
    )
    name: str = Field(min_length=1, max_length=200)
    roles: list[policy.Role] = Field(default_factory=lambda: [policy.Role.INTEGRATION], min_length=1)
    scopes: list[str] | None = None
    expires_at: datetime | None = None


class MemberIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "email": "ana@example.com",
                    "password": "her own secret",
                    "customer_id": "0f8b6c1e-4c7a-4a5e-9d55-2f0c1d9e7a10",
                }
            ]
        },
    )
    email: EmailStr
    password: str = Field(min_length=10, max_length=200)
    customer_id: str = Field(min_length=1, max_length=36)


@admin.get("/roles", summary="Roles and the permissions each grants")
async def roles() -> dict[str, list[str]]:
    return policy.role_matrix()


@admin.get("/users", summary="List staff users")
async def list_users(request: Request) -> list[dict[str, Any]]:
    return await store_of(request).list_users()


@admin.post("/users", status_code=201, summary="Create a staff user (argon2-hashed password)")
async def create_user(body: UserIn, request: Request) -> dict[str, Any]:
    return await store_of(request).create_user(
        body.username, body.password, [r.value for r in body.roles], body.branch
    )


@admin.patch("/users/{username}", summary="Disable, re-role, re-branch or reset a staff user")
async def update_user(username: str, body: UserPatch, request: Request) -> dict[str, Any]:
    return await store_of(request).update_user(
        username,
        disabled=body.disabled,
        roles=[r.value for r in body.roles] if body.roles is not None else None,
        branch=body.branch,
        clear_branch="branch" in body.model_fields_set and body.branch is None,
        password=body.password,
    )


@admin.get("/clients", summary="List OAuth2 clients")
async def list_clients(request: Request) -> list[dict[str, Any]]:
    return await store_of(request).list_clients()


@admin.post("/clients", status_code=201, summary="Create an OAuth2 client (the secret is shown once)")
async def create_client(body: ClientIn, request: Request) -> dict[str, Any]:
    return await store_of(request).create_client(
        body.name, [r.value for r in body.roles], body.scopes, body.client_id
    )


@admin.delete("/clients/{client_id}", status_code=204, summary="Disable an OAuth2 client")
async def delete_client(client_id: str, request: Request) -> Response:
    await store_of(request).disable_client(client_id)
    return Response(status_code=204)


@admin.get("/api-keys", summary="List API keys (never their secrets)")
async def list_keys(request: Request) -> list[dict[str, Any]]:
    return await store_of(request).list_api_keys()


@admin.post("/api-keys", status_code=201, summary="Create an API key (the key is shown once)")
async def create_key(body: ApiKeyIn, request: Request) -> dict[str, Any]:
    return await store_of(request).create_api_key(
        body.name, [r.value for r in body.roles], body.scopes, body.expires_at, created_by=_caller(request)
    )


@admin.delete("/api-keys/{key_id}", status_code=204, summary="Revoke an API key")
async def revoke_key(key_id: str, request: Request) -> Response:
    await store_of(request).revoke_api_key(key_id)
    request.app.state.api_key_cache.clear()
    return Response(status_code=204)


@admin.post("/signing-keys/rotate", summary="Rotate the token-signing key now")
async def rotate_keys(request: Request) -> dict[str, Any]:
    kid = await store_of(request).rotate()
    return {"kid": kid, "jwks": store_of(request).jwks()}


@admin.get("/members", summary="List member logins (optionally of one customer)")
async def list_members(
    request: Request, customer_id: Annotated[str | None, Query(max_length=36)] = None
) -> list[dict[str, Any]]:
    return await store_of(request).list_members(customer_id)


@admin.post("/members", status_code=201, summary="Create a member login for a customer")
async def create_member(body: MemberIn, request: Request) -> dict[str, Any]:
    upstream = request.app.state.upstreams["identity"]
    found = await upstream.request(
        "GET",
        f"/customers/{body.customer_id}",
        headers={"authorization": f"Bearer {store_of(request).service_token()}"},
    )
    if found.status_code != 200 or found.json().get("id") != body.customer_id:
        raise InvalidInput("body.customer_id", "no such (current) customer")
    return await store_of(request).create_member(str(body.email), body.password, body.customer_id)


@admin.delete("/members/{credential_id}", status_code=204, summary="Disable a member login")
async def delete_member(credential_id: str, request: Request) -> Response:
    await store_of(request).disable_member(credential_id)
    return Response(status_code=204)


@admin.get("/audit", summary="The audit log of personal-data access, newest first")
async def audit(
    request: Request,
    customer_id: Annotated[str | None, Query(max_length=36)] = None,
    actor: Annotated[str | None, Query(max_length=320, examples=["user:lucia"])] = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> dict[str, Any]:
    writer = request.app.state.audit
    await writer.flush()  # what was just done is visible at once
    conditions = []
    if customer_id:
        conditions.append(audit_log.c.customer_id == customer_id)
    if actor:
        conditions.append(audit_log.c.actor == actor)
    if since:
        conditions.append(audit_log.c.at >= since)
    if until:
        conditions.append(audit_log.c.at < until)
    query = select(audit_log).order_by(audit_log.c.id.desc()).limit(limit + 1).offset(offset)
    if conditions:
        query = query.where(and_(*conditions))
    async with store_of(request).sessions() as session:
        rows = (await session.execute(query)).mappings().all()
    items = [dict(r) for r in rows[:limit]]
    return {
        "items": items,
        "limit": limit,
        "offset": offset,
        "next_offset": offset + limit if len(rows) > limit else None,
    }
