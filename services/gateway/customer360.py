"""The customer 360: one call gathering what every service knows about a customer.

Identity is the core: it says whether the customer exists (404), was erased (410) or was merged
into another (the 360 is then the survivor's), and without it there is no 360 (503). Every other
part — consents, timeline, open complaints, value/risk/ladder, segments, loyalty — is fetched
concurrently with its own time limit (`CRM_GATEWAY_CUSTOMER360_PART_TIMEOUT`); a part whose service
is down, failing or slow comes back null and is marked `unavailable` in `parts`, so one sick service
never takes the whole page down or makes it hang.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, cast

import httpx
from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from services.gateway.cache360 import Built, Customer360Cache, caller_key
from services.gateway.settings import GatewaySettings
from services.gateway.upstreams import Upstream
from services.gateway.webhooks.catalogue import event_types
from shared.auth.guard import principal_var
from shared.context import request_id_var
from shared.contracts.identity import CustomerErased, CustomerMerged, CustomerRegistered, CustomerUnmerged
from shared.contracts.interactions import (
    ComplaintOpened,
    ComplaintSlaBreached,
    ComplaintStatusChanged,
    InteractionRecorded,
    PurchaseRecorded,
    PurchaseRefunded,
    SurveyAnswered,
)
from shared.contracts.loyalty import (
    MemberEnrolled,
    PointsEarned,
    PointsRedeemed,
    ReferralCompleted,
    TierChanged,
)
from shared.contracts.segmentation import SegmentEntered, SegmentExited
from shared.errors import PROBLEM_JSON, Problem, ServiceUnavailable
from shared.logging import get_logger

log = get_logger(__name__)

router = APIRouter(tags=["customer 360"])

DEFAULT_PROGRAM = "default"
OPEN_COMPLAINT_STATUSES = frozenset({"opened", "acknowledged", "in_progress", "reopened"})

# The parts of a 360 by the service that answers them: the groups the cache keeps and drops.
GROUPS: dict[str, tuple[str, ...]] = {
    "identity": ("profile", "consents"),
    "interactions": ("timeline", "complaints"),
    "segmentation": ("value", "segments"),
    "loyalty": ("loyalty",),
}
_LIFECYCLE = (CustomerRegistered, CustomerMerged, CustomerUnmerged, CustomerErased)
# The events each service consumes (and so may change what it answers on): its consumer's
# registrations, kept in step by tests/unit/test_gateway_cache360.py.
CONSUMES: dict[str, frozenset[str]] = {
    "identity": frozenset(),
    "interactions": frozenset(c.full_type() for c in _LIFECYCLE),
    "segmentation": frozenset(
        c.full_type()
        for c in (
            *_LIFECYCLE,
            PurchaseRecorded,
            PurchaseRefunded,
            InteractionRecorded,
            ComplaintOpened,
            ComplaintStatusChanged,
            ComplaintSlaBreached,
            SurveyAnswered,
            MemberEnrolled,
            TierChanged,
            ReferralCompleted,
            PointsEarned,
            PointsRedeemed,
        )
    ),
    "loyalty": frozenset(
        c.full_type()
        for c in (
            *_LIFECYCLE,
            PurchaseRecorded,
            PurchaseRefunded,
            SurveyAnswered,
            SegmentEntered,
            SegmentExited,
        )
    ),
}


@functools.lru_cache(maxsize=1024)
def affected_groups(event_type: str) -> frozenset[str] | None:
    """The groups of parts an event can have changed: its publisher's and its consumers'. None (all)
    for an event type the gateway does not know."""
    payload = event_types().get(event_type)
    if payload is None or payload.topic.owner not in GROUPS:
        return None
    return frozenset({payload.topic.owner, *(s for s, types in CONSUMES.items() if event_type in types)})


class PartStatus(StrEnum):
    OK = "ok"
    NOT_FOUND = "not_found"
    UNAVAILABLE = "unavailable"


class Identifier(BaseModel):
    kind: str = Field(examples=["email"], description="email, phone, external (`system:id`) or loyalty_card")
    value: str = Field(examples=["ana@example.com"])


class LoyaltyPart(BaseModel):
    points: int | None = Field(
        description="Available points in the default program (null when not a member)", examples=[101]
    )
    tier: str | None = Field(description="Tier in the default program", examples=["silver"])
    memberships: list[dict[str, Any]] = Field(
        description="Every program membership with its balances, as the loyalty service returns them"
    )


class Parts(BaseModel):
    """How each part fared: `ok`, `not_found` (the service has nothing for this customer yet, e.g. no
    value computed) or `unavailable` (the service is down, failing or too slow: the part is null)."""

    identity: PartStatus = PartStatus.OK
    consents: PartStatus = PartStatus.OK
    timeline: PartStatus = PartStatus.OK
    complaints: PartStatus = PartStatus.OK
    value: PartStatus = PartStatus.OK
    segments: PartStatus = PartStatus.OK
    loyalty: PartStatus = PartStatus.OK


EXAMPLE: dict[str, Any] = {
    "customer_id": "0f8b6c1e-4c7a-4a5e-9d55-2f0c1d9e7a10",
    "resolved_from": None,
    "profile": {
        "id": "0f8b6c1e-4c7a-4a5e-9d55-2f0c1d9e7a10",
        "kind": "person",
        "status": "active",
        "given_name": "Ana",
        "family_name": "García",
        "email": "ana@example.com",
    },
    "identifiers": [
        {"kind": "email", "value": "ana@example.com"},
        {"kind": "loyalty_card", "value": "6012345678901234"},
    ],
    "consents": {"consents": [{"channel": "email", "purpose": "marketing", "status": "granted"}]},
    "timeline": [{"kind": "purchase", "channel": "store", "occurred_at": "2026-03-01T10:00:00Z"}],
    "open_complaints": [],
    "value": {"value_tier": "high", "rfm": {"recency": 5, "frequency": 2, "monetary": 4}},
    "risk": {"score": 12, "level": "low", "reasons": []},
    "ladder_stage": "customer",
    "segments": [{"segment_id": "vip", "name": "VIP", "entered_at": "2026-03-01T10:00:01Z"}],
    "loyalty": {"points": 101, "tier": "silver", "memberships": [{"program_id": "default"}]},
    "parts": {
        "identity": "ok",
        "consents": "ok",
        "timeline": "ok",
        "complaints": "ok",
        "value": "ok",
        "segments": "ok",
        "loyalty": "unavailable",
    },
}


class Customer360(BaseModel):
    """Everything the platform knows about a customer, in one document."""

    model_config = ConfigDict(json_schema_extra={"examples": [EXAMPLE]})

    customer_id: str = Field(description="The customer's id — the survivor's, if the id asked for was merged")
    resolved_from: str | None = Field(description="The id asked for, when it was merged into `customer_id`")
    profile: dict[str, Any] = Field(description="The golden record, as identity returns it")
    identifiers: list[Identifier] = Field(description="Email, phone, external ids and loyalty cards")
    consents: dict[str, Any] | None = Field(description="Current consents and contact preferences")
    timeline: list[dict[str, Any]] | None = Field(description="The most recent interactions, newest first")
    open_complaints: list[dict[str, Any]] | None = Field(description="Complaints not yet resolved or closed")
    value: dict[str, Any] | None = Field(description="RFM, CLV, value tier, activity and stage history")
    risk: dict[str, Any] | None = Field(description="Abandonment-risk score, level and reasons")
    ladder_stage: str | None = Field(description="Loyalty-ladder stage", examples=["supporter"])
    segments: list[dict[str, Any]] | None = Field(description="The segments the customer belongs to")
    loyalty: LoyaltyPart | None = Field(description="Points, tier and every membership")
    parts: Parts


@dataclass(frozen=True, slots=True)
class Fetched:
    status: PartStatus
    body: Any = None


def _upstreams(request: Request) -> dict[str, Upstream]:
    result: dict[str, Upstream] = request.app.state.upstreams
    return result


def _settings(request: Request) -> GatewaySettings:
    settings: GatewaySettings = request.app.state.settings
    return settings


_abandoned: set[asyncio.Future[Any]] = set()


def _abandon(future: asyncio.Future[Any]) -> None:
    """Stop waiting for `future` without cancelling it: it finishes (bounded by the client's own
    timeout) in the background. Cancelling a request mid-flight is avoided on purpose: in embedded mode
    the service runs in this process and would be interrupted inside its database transaction."""
    if future.done():
        _consume(future)
        return
    _abandoned.add(future)
    future.add_done_callback(_consume)


def _consume(future: asyncio.Future[Any]) -> None:
    _abandoned.discard(future)
    if not future.cancelled():
        future.exception()  # retrieved, so never reported as unhandled


async def _get(
    upstream: Upstream,
    path: str,
    *,
    timeout: float,
    params: list[tuple[str, str | int | float | bool | None]] | None = None,
) -> httpx.Response | None:
    """The service's answer, or None when it is unreachable, failing (5xx) or slower than `timeout`."""
    # No retries and the part's own timeout on the HTTP call too: a part not waited for any more
    # must not keep a pooled connection (or retry) long after — under overload that is what turns a
    # burst into minutes of queued work.
    request = asyncio.ensure_future(
        upstream.request(
            "GET",
            path,
            params=params,
            headers={"x-request-id": request_id_var.get() or ""},
            timeout=timeout,
            retries=0,
        )
    )
    try:
        response = await asyncio.wait_for(asyncio.shield(request), timeout)
    except TimeoutError:
        _abandon(request)
        log.warning("customer360_part_timeout", service=upstream.name, path=path, timeout=timeout)
        return None
    except (ServiceUnavailable, httpx.HTTPError) as exc:
        log.warning("customer360_part_unavailable", service=upstream.name, path=path, error=repr(exc))
        return None
    except asyncio.CancelledError:
        _abandon(request)  # the client went away: let the service finish what it started
        raise
    if response.status_code >= 500:
        log.warning("customer360_part_failed", service=upstream.name, path=path, status=response.status_code)
        return None
    return response


async def _part(
    upstream: Upstream,
    path: str,
    *,
    timeout: float,
    params: list[tuple[str, str | int | float | bool | None]] | None = None,
) -> Fetched:
    response = await _get(upstream, path, timeout=timeout, params=params)
    if response is None:
        return Fetched(PartStatus.UNAVAILABLE)
    if response.status_code in (404, 410):
        return Fetched(PartStatus.NOT_FOUND)
    if response.status_code != 200:
        log.warning("customer360_part_refused", service=upstream.name, path=path, status=response.status_code)
        return Fetched(PartStatus.UNAVAILABLE)
    try:
        return Fetched(PartStatus.OK, response.json())
    except ValueError:
        return Fetched(PartStatus.UNAVAILABLE)


def _fetchers(
    services: dict[str, Upstream], settings: GatewaySettings, customer_id: str, parts: frozenset[str]
) -> dict[str, Callable[[], Awaitable[Fetched]]]:
    """The calls that fetch `parts` (of consents, timeline, complaints, value, segments, loyalty)."""
    timeout = settings.customer360_part_timeout
    limit = settings.customer360_timeline_limit
    every: dict[str, Callable[[], Awaitable[Fetched]]] = {
        "consents": lambda: _part(
            services["identity"], f"/customers/{customer_id}/consents", timeout=timeout
        ),
        "timeline": lambda: _part(
            services["interactions"],
            f"/customers/{customer_id}/timeline",
            timeout=timeout,
            params=[("limit", limit)],
        ),
        "complaints": lambda: _part(
            services["interactions"], f"/customers/{customer_id}/complaints", timeout=timeout
        ),
        "value": lambda: _part(services["segmentation"], f"/customers/{customer_id}/value", timeout=timeout),
        "segments": lambda: _part(
            services["segmentation"], f"/customers/{customer_id}/segments", timeout=timeout
        ),
        "loyalty": lambda: _part(services["loyalty"], f"/members/{customer_id}/memberships", timeout=timeout),
    }
    return {name: fetcher for name, fetcher in every.items() if name in parts}


async def _gather(fetchers: dict[str, Callable[[], Awaitable[Fetched]]]) -> dict[str, Fetched]:
    if not fetchers:
        return {}
    results = await asyncio.gather(*(fetch() for fetch in fetchers.values()))
    return dict(zip(fetchers, results, strict=True))


def _identifiers(profile: dict[str, Any], memberships: list[dict[str, Any]]) -> list[Identifier]:
    out: list[Identifier] = []
    for kind in ("email", "phone"):
        if profile.get(kind):
            out.append(Identifier(kind=kind, value=str(profile[kind])))
    for system, ids in sorted((profile.get("external_ids") or {}).items()):
        out.extend(Identifier(kind="external", value=f"{system}:{i}") for i in ids)
    for membership in memberships:
        if membership.get("card_number") and membership.get("card_status", "active") == "active":
            out.append(Identifier(kind="loyalty_card", value=str(membership["card_number"])))
    return out


def _loyalty(fetched: Fetched) -> LoyaltyPart | None:
    if fetched.status is not PartStatus.OK:
        return None
    memberships = cast(list[dict[str, Any]], fetched.body or [])
    default = next((m for m in memberships if m.get("program_id") == DEFAULT_PROGRAM), None)
    points = (default.get("balances") or {}).get("available") if default else None
    return LoyaltyPart(points=points, tier=default.get("tier") if default else None, memberships=memberships)


PROBLEM: dict[str, Any] = {"model": Problem, "content": {PROBLEM_JSON: {}}}


@router.get(
    "/api/customers/{customer_id}/360",
    response_model=Customer360,
    summary="Customer 360: everything about a customer in one call",
    description=(
        "The profile and identifiers (identity), consents, the most recent timeline entries and open "
        "complaints (interactions), value, risk and loyalty-ladder stage and segments (segmentation), "
        "and points, tier and memberships (loyalty), fetched concurrently.\n\n"
        "A merged id answers with the survivor (`resolved_from` names the id asked for). Identity is the "
        "core: if it is unavailable the answer is 503. Any other service that is down, failing or "
        "slower than the per-part time limit leaves its part null and marked `unavailable` in `parts`; "
        "a service with nothing on the customer yet (no value computed, say) marks it `not_found`."
    ),
    responses={
        404: {**PROBLEM, "description": "No such customer"},
        410: {**PROBLEM, "description": "The customer was erased"},
        503: {**PROBLEM, "description": "Identity is unavailable, so there is no 360"},
    },
)
async def customer_360(customer_id: str, request: Request) -> Response:
    cache: Customer360Cache = request.app.state.customer360_cache
    answer: _Answer = await cache.get(
        customer_id, caller_key(principal_var.get()), lambda reuse: _build(request, customer_id, reuse)
    )
    # A Response of its own per request (middlewares add headers to it); the body is serialised once.
    return Response(answer.body, status_code=answer.status, media_type=answer.media_type)


@dataclass(frozen=True, slots=True)
class _Answer:
    status: int
    body: bytes
    media_type: str | None


async def _build(request: Request, customer_id: str, reuse: Mapping[str, Any]) -> Built:
    """The answer, the customer ids it covers, whether it is complete (and so may be cached), and
    the groups of parts fetched that may be kept. Groups in `reuse` (as an earlier build returned
    them) are not fetched again."""
    services = _upstreams(request)
    settings = _settings(request)
    identity = services["identity"]
    kept: dict[str, Fetched] = {
        part: got for group, payload in reuse.items() for part, got in payload.items()
    }
    missing = frozenset(part for parts in GROUPS.values() for part in parts) - kept.keys() - {"profile"}
    if "profile" in kept:
        profile = cast(dict[str, Any], kept["profile"].body)
        survivor = str(profile["id"])
        parts = {**kept, **await _gather(_fetchers(services, settings, survivor, missing))}
    else:
        # Everything at once under the id asked for; if identity says it was merged, the other parts
        # are fetched again under the survivor's id (rare: one extra round trip only then).
        profile_task = asyncio.create_task(
            _get(identity, f"/customers/{customer_id}", timeout=settings.customer360_part_timeout)
        )
        parts_task = asyncio.ensure_future(_gather(_fetchers(services, settings, customer_id, missing)))
        try:
            profile_response = await profile_task
        except BaseException:
            _abandon(parts_task)
            raise
        if profile_response is None:
            _abandon(parts_task)
            raise ServiceUnavailable(
                "identity service is unavailable: the customer 360 cannot be built", service="identity"
            )
        if profile_response.status_code != 200:
            _abandon(parts_task)
            answer = _Answer(
                profile_response.status_code,
                profile_response.content,
                profile_response.headers.get("content-type"),
            )
            return Built(answer, frozenset({customer_id}), False)
        profile = profile_response.json()
        survivor = str(profile["id"])
        if survivor != customer_id:
            _abandon(parts_task)
            fetched = await _gather(_fetchers(services, settings, survivor, missing))
        else:
            fetched = await parts_task
        parts = {**kept, **fetched, "profile": Fetched(PartStatus.OK, profile)}

    value = parts["value"]
    loyalty = _loyalty(parts["loyalty"])
    complaints = parts["complaints"]
    segments = parts["segments"]
    timeline = parts["timeline"]
    value_body: dict[str, Any] | None = value.body if value.status is PartStatus.OK else None
    complete = all(p.status is not PartStatus.UNAVAILABLE for p in parts.values())
    # The groups fetched now, each kept only if every part of it answered.
    fresh = {
        group: {part: parts[part] for part in names}
        for group, names in GROUPS.items()
        if group not in reuse and all(parts[part].status is not PartStatus.UNAVAILABLE for part in names)
    }
    built = Customer360(
        customer_id=survivor,
        resolved_from=profile.get("resolved_from"),
        profile=profile,
        identifiers=_identifiers(profile, loyalty.memberships if loyalty else []),
        consents=parts["consents"].body,
        timeline=(timeline.body or {}).get("items") if timeline.status is PartStatus.OK else None,
        open_complaints=(
            [c for c in complaints.body or [] if c.get("status") in OPEN_COMPLAINT_STATUSES]
            if complaints.status is PartStatus.OK
            else None
        ),
        value=value_body,
        risk=value_body.get("risk") if value_body else None,
        ladder_stage=value_body.get("ladder_stage") if value_body else None,
        segments=(segments.body or {}).get("items") if segments.status is PartStatus.OK else None,
        loyalty=loyalty,
        parts=Parts(
            identity=PartStatus.OK,
            consents=parts["consents"].status,
            timeline=timeline.status,
            complaints=complaints.status,
            value=value.status,
            segments=segments.status,
            loyalty=parts["loyalty"].status,
        ),
    )
    answer = _Answer(200, built.model_dump_json().encode(), "application/json")
    return Built(answer, frozenset({survivor}), complete, fresh)
