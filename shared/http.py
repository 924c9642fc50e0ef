"""HTTP plumbing every service app shares: request ids, metrics, problem+json errors, health and readiness."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.auth.guard import authorize, install_authentication_first, principal_var
from shared.context import actor_var, new_request_id, request_id_var
from shared.errors import install_problem_handlers, problem_response
from shared.metrics import HTTP_LATENCY, HTTP_REQUESTS, HTTP_SHED
from shared.openapi_problems import install as install_problem_docs
from shared.telemetry import TracingMiddleware

REQUEST_ID_HEADER = "x-request-id"


class RequestContextMiddleware:
    """Pure ASGI middleware: adopt or mint the request id, echo it back, and record metrics."""

    def __init__(self, app: ASGIApp, *, service: str) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = None
        for name, value in scope.get("headers", ()):
            if name == b"x-request-id":
                incoming = value.decode("latin-1")[:128]
                break
        request_id = incoming or new_request_id()
        token = request_id_var.set(request_id)
        # Who is acting, for audit trails: the authorisation guard (shared.auth.guard) replaces it with
        # the verified token's principal on every protected route. Only with authentication switched
        # off (development) does a client-sent `x-actor` survive.
        actor = next(
            (v.decode("latin-1")[:200] for n, v in scope.get("headers", ()) if n == b"x-actor"), None
        )
        actor_token = actor_var.set(actor)
        principal_token = principal_var.set(None)
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            method = scope.get("method", "GET")
            HTTP_REQUESTS.labels(self.service, method, path, str(status)).inc()
            HTTP_LATENCY.labels(self.service, method, path).observe(time.perf_counter() - started)
            request_id_var.reset(token)
            actor_var.reset(actor_token)
            principal_var.reset(principal_token)


class LoadSheddingMiddleware:
    """Pure ASGI middleware: at most `limit` requests in progress; the next one is refused at once.

    Past its capacity, an app that queues every request makes all of them slow, then time out, and
    takes minutes to drain after the load has gone. Refusing the excess at once (503, `Retry-After`)
    keeps the admitted requests fast and the app responsive, and tells clients and the gateway's
    retries when to come back. Probes and metrics are never refused."""

    EXEMPT = frozenset({"/health", "/ready", "/metrics"})

    def __init__(self, app: ASGIApp, *, service: str, limit: int) -> None:
        self.app = app
        self.service = service
        self.limit = limit
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") in self.EXEMPT:
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.limit:
            HTTP_SHED.labels(self.service).inc()
            response = problem_response(
                None,
                status=503,
                slug="overloaded",
                title="Service overloaded",
                detail=f"the {self.service} has {self.limit} requests in progress, its limit: retry shortly",
                headers={"Retry-After": "1"},
                service=self.service,
            )
            await response(scope, receive, send)
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1


ReadinessCheck = Callable[[], Awaitable[dict[str, bool]]]


def operations_router(readiness: ReadinessCheck) -> APIRouter:
    router = APIRouter(tags=["operations"])

    @router.get("/health", summary="Liveness: the process is up", response_model=dict[str, str])
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @router.get(
        "/ready",
        summary="Readiness: the database and the event bus are reachable",
        responses={
            503: {"description": "A dependency is unreachable", "content": {"application/problem+json": {}}}
        },
    )
    async def ready(request: Request) -> Any:
        checks = await readiness()
        if all(checks.values()):
            return {"status": "ready", "checks": checks}
        failing = ", ".join(name for name, ok in checks.items() if not ok)
        return problem_response(
            request,
            status=503,
            slug="not-ready",
            title="Not ready",
            detail=f"unreachable: {failing}",
            checks=checks,
        )

    @router.get("/metrics", summary="Prometheus metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return router


def create_app(
    *, service: str, title: str, description: str, version: str, max_in_flight: int = 0, **kwargs: Any
) -> FastAPI:
    """A service app (or the gateway). Every route runs the authorisation guard first: deny by default,
    see `shared.auth.policy`. `app.state.auth` (an `AuthContext`) says how tokens are verified. With
    `max_in_flight`, requests beyond that many in progress get an immediate 503 (`LoadSheddingMiddleware`)."""
    dependencies = [Depends(authorize), *kwargs.pop("dependencies", [])]
    app = FastAPI(title=title, description=description, version=version, dependencies=dependencies, **kwargs)
    app.state.service_name = service
    install_problem_handlers(app)
    install_problem_docs(app)
    install_authentication_first(app)
    if max_in_flight > 0:  # inside the request context: refusals are counted, logged and carry the id
        app.add_middleware(LoadSheddingMiddleware, service=service, limit=max_in_flight)
    app.add_middleware(RequestContextMiddleware, service=service)
    app.add_middleware(TracingMiddleware, service=service)  # outside it: the span covers it all
    return app


__all__ = [
    "JSONResponse",
    "LoadSheddingMiddleware",
    "RequestContextMiddleware",
    "create_app",
    "operations_router",
]
