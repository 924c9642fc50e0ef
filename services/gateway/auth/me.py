"""Member self-service: `/api/me...` — a customer's own profile, timeline, points and rewards.

Only member tokens reach these routes; the customer is always the token's, never a parameter. The
gateway calls the services with its own service token on the member's behalf, so what a member may
change is decided here: `MemberProfilePatch` (a separate schema from staff's, `extra="forbid"`):
names, phone, language. Nobody sets their own tier, points, segments, status or merge state — extra
fields are a 422 and nothing is changed.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from services.gateway.auth.store import AuthStore
from services.gateway.upstreams import Upstream
from shared.auth.guard import Access
from shared.context import request_id_var
from shared.errors import PROBLEM_JSON, Forbidden, NotFound, Problem

router = APIRouter(prefix="/api/me", tags=["member self-service"])

PROBLEM = {"model": Problem, "content": {PROBLEM_JSON: {}}}
DEFAULT_PROGRAM = "default"


class MemberProfilePatch(BaseModel):
    """What members may change about themselves (staff use identity's own, wider, schema)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"phone": "+34 699 000 111", "language": "es"}]},
    )

    given_name: str | None = Field(default=None, min_length=1, max_length=200)
    family_name: str | None = Field(default=None, min_length=1, max_length=200)
    phone: str | None = Field(default=None, min_length=3, max_length=32)
    language: str | None = Field(default=None, min_length=2, max_length=16)


class RedeemBody(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"confirm": True}]})

    confirm: bool = Field(default=False, description="Redeem at once (reserve and confirm)")


def _customer(request: Request) -> str:
    access: Access | None = getattr(request.state, "access", None)
    principal = access.principal if access else None
    if principal is None or principal.kind != "member" or principal.customer_id is None:
        raise Forbidden("a member token is required")
    return principal.customer_id


async def _call(
    request: Request, service: str, method: str, path: str, *, json: Any = None, **kwargs: Any
) -> Response:
    upstream: Upstream = request.app.state.upstreams[service]
    store: AuthStore = request.app.state.auth_store
    headers = {
        "authorization": f"Bearer {store.service_token()}",
        "x-request-id": request_id_var.get() or "",
        **kwargs.pop("headers", {}),
    }
    content = None
    if json is not None:
        import json as _json

        content = _json.dumps(json).encode()
        headers["content-type"] = "application/json"
    response = await upstream.request(method, path, headers=headers, content=content, **kwargs)
    out_headers = {k: v for k, v in response.headers.items() if k.lower() in ("etag", "content-type")}
    return Response(response.content, status_code=response.status_code, headers=out_headers)


async def _membership(request: Request, customer_id: str, program: str) -> str:
    response = await _call(request, "loyalty", "GET", f"/members/{customer_id}/memberships")
    if response.status_code != 200:
        return _raise(response)
    import json

    for member in json.loads(bytes(response.body)):
        if member.get("program_id") == program:
            return str(member["id"])
    raise NotFound(f"you are not a member of {program}")


def _raise(response: Response) -> str:
    raise NotFound("not available") if response.status_code == 404 else Forbidden("not available")


@router.get("", summary="My profile", responses={404: {**PROBLEM, "description": "No such customer"}})
async def read_me(request: Request) -> Response:
    return await _call(request, "identity", "GET", f"/customers/{_customer(request)}")


@router.patch(
    "",
    summary="Change my name, phone or language",
    description="Only the fields of this schema; anything else (tier, points, status...) is a 422.",
    responses={422: {**PROBLEM, "description": "A field members may not set"}},
)
async def patch_me(
    body: MemberProfilePatch,
    request: Request,
    if_match: Annotated[str | None, Header(alias="If-Match")] = None,
) -> Response:
    changes = body.model_dump(exclude_unset=True)
    changes["reason"] = "member self-service"
    headers = {"if-match": if_match} if if_match else {}
    return await _call(
        request, "identity", "PATCH", f"/customers/{_customer(request)}", json=changes, headers=headers
    )


@router.get("/timeline", summary="My interactions, newest first")
async def my_timeline(request: Request, limit: Annotated[int, Query(ge=1, le=200)] = 50) -> Response:
    return await _call(
        request, "interactions", "GET", f"/customers/{_customer(request)}/timeline", params=[("limit", limit)]
    )


@router.get("/points", summary="My points balance and tier")
async def my_points(
    request: Request, program: Annotated[str, Query(max_length=64)] = DEFAULT_PROGRAM
) -> Response:
    return await _call(
        request, "loyalty", "GET", f"/members/{_customer(request)}/balance", params=[("program", program)]
    )


@router.get("/rewards", summary="The reward catalogue, as it applies to me")
async def my_rewards(
    request: Request, program: Annotated[str, Query(max_length=64)] = DEFAULT_PROGRAM
) -> Response:
    member_id = await _membership(request, _customer(request), program)
    return await _call(request, "loyalty", "GET", f"/programs/{program}/members/{member_id}/catalogue")


@router.post("/rewards/{reward_id}/redeem", status_code=201, summary="Redeem a reward with my points")
async def redeem(
    reward_id: str,
    request: Request,
    body: RedeemBody | None = None,
    program: Annotated[str, Query(max_length=64)] = DEFAULT_PROGRAM,
) -> Response:
    member_id = await _membership(request, _customer(request), program)
    payload = {"reward_id": reward_id, "confirm": bool(body and body.confirm)}
    return await _call(
        request, "loyalty", "POST", f"/programs/{program}/members/{member_id}/redemptions", json=payload
    )
