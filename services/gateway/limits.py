"""The gateway's front-door limits: rate limits per client, request-body size, page-size caps, CORS.

Rate limits are token buckets kept in this process's memory, one per (rule, client). The client is
the API key (`X-API-Key`) or bearer token presented — identified by a hash of it, never stored — or
else the client's IP address (`X-Forwarded-For` only when `CRM_GATEWAY_TRUST_FORWARDED_FOR` says the
gateway sits behind a trusted proxy). Stricter rules apply to login (`/auth/token` and
`/auth/member/token`), referrals (any `/referrals` path, and enrolments carrying a `referral_code`
query or body field are counted on the enrolment path) and redemptions (`/redemptions`). Over the
limit: 429 problem+json with Retry-After.
Rate limits are on outside development unless `CRM_GATEWAY_RATE_LIMIT_ENABLED` says otherwise (in
development `crm demo` and the benchmarks load data through the gateway from one address).

With several gateway replicas each keeps its own buckets, so the effective limit is the rate times
the replica count: a deployment that needs exact global limits must move the buckets to a shared
store (Redis, say) — the `TokenBuckets` interface is the seam for that.

Bodies larger than `CRM_GATEWAY_MAX_BODY_BYTES` are refused with 413 — at once when Content-Length
says so, or as soon as a chunked body crosses the limit. Page sizes (`limit`, `page_size`,
`per_page` query parameters) above `CRM_GATEWAY_MAX_PAGE_SIZE` are refused with 422 naming the
parameter, rather than silently clamped: a client asking for more than it gets would think it had
everything. The default cap (1000) is the largest page any service serves.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.errors import DomainError, FieldError, problem_response

EXEMPT_PATHS = frozenset({"/health", "/ready", "/metrics"})
PAGE_SIZE_PARAMS = ("limit", "page_size", "per_page")


@dataclass(frozen=True, slots=True)
class RateRule:
    """Requests matching `pattern` (and one of `methods`, if given) share a bucket per client."""

    name: str
    per_minute: int
    burst: int
    pattern: re.Pattern[str] | None = None
    methods: frozenset[str] | None = None
    body_field: str | None = None  # also required: a JSON body with this field set (not null/empty)

    def matches(self, method: str, path: str) -> bool:
        """Whether method and path match (the body condition, if any, is checked by the caller)."""
        if self.pattern is None:
            return True
        if self.methods is not None and method not in self.methods:
            return False
        return self.pattern.search(path) is not None

    def body_matches(self, body: bytes) -> bool:
        if self.body_field is None:
            return True
        try:
            document = json.loads(body)
        except ValueError:
            return False
        return isinstance(document, dict) and bool(document.get(self.body_field))


def default_rules(
    *, per_minute: int, burst: int, login: int, referral: int, redemption: int
) -> list[RateRule]:
    """The stricter rules first; the last rule (everything) is the default."""
    writes = frozenset({"POST", "PUT", "PATCH", "DELETE"})
    return [
        RateRule("login", login, login, re.compile(r"^/auth/(token|member/token)$")),
        RateRule("referral", referral, referral, re.compile(r"/referrals(/|$)|[?&]referral_code="), writes),
        RateRule(
            "referral",
            referral,
            referral,
            re.compile(r"^/api/loyalty/programs/[^/]+/members$"),
            frozenset({"POST"}),
            body_field="referral_code",
        ),
        RateRule("redemption", redemption, redemption, re.compile(r"/redemptions(/|$)"), writes),
        RateRule("default", per_minute, burst),
    ]


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class TokenBuckets:
    """In-memory token buckets (per gateway process). Thread-unsafe by design: one event loop."""

    def __init__(self, *, max_clients: int = 100_000, clock: Callable[[], float] = time.monotonic) -> None:
        self._buckets: dict[tuple[str, str], _Bucket] = {}
        self.max_clients = max_clients
        self._now = clock

    def take(self, rule: RateRule, client: str) -> float:
        """Take one token: 0 if allowed, else the seconds until one is available."""
        now = self._now()
        rate = rule.per_minute / 60.0
        key = (rule.name, client)
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.max_clients:
                self._evict(now)
            bucket = self._buckets[key] = _Bucket(tokens=float(rule.burst), updated=now)
        else:
            bucket.tokens = min(float(rule.burst), bucket.tokens + (now - bucket.updated) * rate)
            bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / rate

    def _evict(self, _now: float) -> None:
        """Drop the buckets idle longest (a full bucket carries no state worth keeping)."""
        by_age = sorted(self._buckets.items(), key=lambda item: item[1].updated)
        for key, _ in by_age[: max(1, len(by_age) // 10)]:
            del self._buckets[key]

    def __len__(self) -> int:
        return len(self._buckets)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))
    return None


def client_key(scope: Scope, *, trust_forwarded_for: bool) -> str:
    """Who is calling: a hash of the API key or bearer token presented, else the client IP."""
    api_key = _header(scope, b"x-api-key")
    authorization = _header(scope, b"authorization")
    credential = api_key or (
        authorization[7:].strip() if authorization and authorization[:7].lower() == "bearer " else None
    )
    if credential:
        return "key:" + hashlib.sha256(credential.encode()).hexdigest()[:24]
    if trust_forwarded_for:
        forwarded = _header(scope, b"x-forwarded-for")
        if forwarded:
            return "ip:" + forwarded.split(",")[0].strip()
    client = scope.get("client")
    return "ip:" + (client[0] if client else "unknown")


class RateLimitMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        rules: Sequence[RateRule],
        buckets: TokenBuckets,
        trust_forwarded_for: bool = False,
    ) -> None:
        self.app = app
        self.rules = list(rules)
        self.buckets = buckets
        self.trust_forwarded_for = trust_forwarded_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in EXEMPT_PATHS or scope["method"] == "OPTIONS":
            await self.app(scope, receive, send)
            return
        method = scope["method"]
        query = scope.get("query_string", b"").decode("latin-1")
        target = scope["path"] + ("?" + query if query else "")
        rule: RateRule | None = None
        body: list[Message] | None = None
        for candidate in self.rules:
            if not candidate.matches(method, target):
                continue
            if candidate.body_field is not None:
                if body is None:
                    try:
                        body = await _read_body(receive)
                    except PayloadTooLarge as exc:
                        await _problem(scope, receive, send, exc)
                        return
                if not candidate.body_matches(b"".join(m.get("body", b"") for m in body)):
                    continue
            rule = candidate
            break
        if body is not None:
            receive = _replay(body, receive)
        if rule is None:
            await self.app(scope, receive, send)
            return
        client = client_key(scope, trust_forwarded_for=self.trust_forwarded_for)
        wait = self.buckets.take(rule, client)
        if wait > 0:
            retry_after = max(1, math.ceil(wait))
            response = problem_response(
                Request(scope),
                status=429,
                slug="rate-limited",
                title="Too many requests",
                detail=(
                    f"rate limit {rule.name!r} ({rule.per_minute}/minute) exceeded; retry in {retry_after}s"
                ),
                headers={"Retry-After": str(retry_after)},
                limit=rule.name,
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


async def _read_body(receive: Receive) -> list[Message]:
    messages: list[Message] = []
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request" or not message.get("more_body", False):
            return messages


def _replay(messages: list[Message], receive: Receive) -> Receive:
    pending = list(messages)

    async def replay() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replay


async def _problem(scope: Scope, receive: Receive, send: Send, exc: DomainError) -> None:
    response = problem_response(
        Request(scope), status=exc.status, slug=exc.slug, title=exc.title, detail=exc.detail, **exc.extensions
    )
    await response(scope, receive, send)


class PayloadTooLarge(DomainError):
    status = 413
    slug = "payload-too-large"
    title = "Request body too large"


class BodyLimitMiddleware:
    """413 for bodies over `max_bytes`: announced (Content-Length) or streamed (counted as read)."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            response = problem_response(
                Request(scope),
                status=413,
                slug=PayloadTooLarge.slug,
                title=PayloadTooLarge.title,
                detail=f"the body is {declared} bytes; at most {self.max_bytes} are accepted",
                max_bytes=self.max_bytes,
            )
            await response(scope, receive, send)
            return
        seen = 0

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    # Raised inside the app: its problem handlers turn it into a 413 document.
                    raise PayloadTooLarge(
                        f"the body exceeds {self.max_bytes} bytes", max_bytes=self.max_bytes
                    )
            return message

        await self.app(scope, limited_receive, send)


class PageSizeMiddleware:
    """422 for `limit`/`page_size`/`per_page` above the cap, naming the parameter."""

    def __init__(self, app: ASGIApp, *, max_page_size: int) -> None:
        self.app = app
        self.max_page_size = max_page_size

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope.get("query_string"):
            await self.app(scope, receive, send)
            return
        errors: list[FieldError] = []
        for name, value in parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True):
            if name in PAGE_SIZE_PARAMS:
                try:
                    size = int(value)
                except ValueError:
                    continue  # the service validates the type
                if size > self.max_page_size:
                    errors.append(FieldError(f"query.{name}", f"at most {self.max_page_size} per page"))
        if errors:
            response = problem_response(
                Request(scope),
                status=422,
                slug="validation-error",
                title="Request validation failed",
                detail="; ".join(f"{e.field}: {e.message}" for e in errors),
                errors=errors,
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)
