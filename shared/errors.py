"""Errors as RFC 9457 problem details (`application/problem+json`).

Domain code raises a `DomainError` subclass; it carries its HTTP status, a stable problem type and,
for invalid input, the exact fields at fault. The handlers installed by `install_problem_handlers`
turn those, FastAPI's request-validation errors and anything unexpected into problem documents, so
every client sees one error shape whichever service answered.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from shared.context import request_id_var
from shared.logging import get_logger

PROBLEM_JSON = "application/problem+json"
PROBLEM_BASE = "https://crm.dev/problems/"

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class FieldError:
    """One reason a request was refused: the JSON path of the field (`body.email`) and why."""

    field: str
    message: str


class FieldErrorModel(BaseModel):
    field: str = Field(examples=["body.email"])
    message: str = Field(examples=["value is not a valid email address"])


class Problem(BaseModel):
    """RFC 9457 problem details, with the fields at fault and the request id as extensions."""

    type: str = Field(examples=[PROBLEM_BASE + "validation-error"])
    title: str = Field(examples=["Request validation failed"])
    status: int = Field(examples=[422])
    detail: str | None = Field(default=None, examples=["body.email: value is not a valid email address"])
    instance: str | None = Field(default=None, examples=["/customers"])
    errors: list[FieldErrorModel] | None = None
    request_id: str | None = None


class DomainError(Exception):
    """Base of every error the domain raises on purpose. Subclasses set status, slug and title."""

    status: ClassVar[int] = 400
    slug: ClassVar[str] = "bad-request"
    title: ClassVar[str] = "Bad request"

    def __init__(self, detail: str, *, errors: Sequence[FieldError] = (), **extensions: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = list(errors)
        self.extensions = extensions
        self.headers: dict[str, str] | None = None  # e.g. WWW-Authenticate on a 401


class InvalidInput(DomainError):
    """Well-formed request, but a value breaks a rule of the domain; names the field."""

    status = 422
    slug = "invalid-input"
    title = "Invalid input"

    def __init__(self, field: str, message: str, **extensions: Any) -> None:
        super().__init__(f"{field}: {message}", errors=[FieldError(field, message)], **extensions)


class NotFound(DomainError):
    status = 404
    slug = "not-found"
    title = "Not found"


class Conflict(DomainError):
    status = 409
    slug = "conflict"
    title = "Conflict"


class Gone(DomainError):
    """The resource existed and was deliberately removed (e.g. an erased customer)."""

    status = 410
    slug = "gone"
    title = "Gone"


class PreconditionFailed(DomainError):
    """The `If-Match` version is stale: someone else changed the resource first."""

    status = 412
    slug = "precondition-failed"
    title = "Precondition failed"


class Forbidden(DomainError):
    status = 403
    slug = "forbidden"
    title = "Forbidden"


class Unauthorized(DomainError):
    status = 401
    slug = "unauthorized"
    title = "Authentication required"


class ServiceUnavailable(DomainError):
    status = 503
    slug = "service-unavailable"
    title = "Service unavailable"


# SQLSTATEs that say "the database cannot serve you right now", not "your request is wrong": class 08
# (connection exceptions), 53300 too many connections, 57P01–57P03 administrator/crash shutdown and
# "the database system is starting up".
_UNAVAILABLE_SQLSTATES = frozenset({"53300", "57P01", "57P02", "57P03"})


def sqlstate(exc: BaseException) -> str | None:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        code = getattr(current, "sqlstate", None) or getattr(current, "pgcode", None)
        if isinstance(code, str):
            return code
        current = getattr(current, "orig", None) or current.__cause__
    return None


def database_unavailable(exc: BaseException) -> bool:
    """Whether `exc` means the database (or the network to it) is down or restarting: worth a retry
    later (503 with Retry-After for HTTP callers; a redelivery, not a dead letter, for consumers)."""
    from sqlalchemy import exc as sa_exc

    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return True
    if isinstance(exc, (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.DisconnectionError)):
        return True
    if isinstance(exc, (sa_exc.TimeoutError, ConnectionError, TimeoutError)):
        return True  # no connection from the pool in time; refused or reset connections
    code = sqlstate(exc)
    return code is not None and (code.startswith("08") or code in _UNAVAILABLE_SQLSTATES)


def problem_response(
    request: Request | None,
    *,
    status: int,
    slug: str,
    title: str,
    detail: str | None = None,
    errors: Sequence[FieldError] = (),
    headers: dict[str, str] | None = None,
    **extensions: Any,
) -> JSONResponse:
    body: dict[str, Any] = {"type": PROBLEM_BASE + slug, "title": title, "status": status}
    if detail:
        body["detail"] = detail
    if request is not None:
        body["instance"] = request.url.path
    if errors:
        body["errors"] = [{"field": e.field, "message": e.message} for e in errors]
    request_id = request_id_var.get()
    if request_id:
        body["request_id"] = request_id
    body.update(extensions)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _location(loc: Sequence[int | str]) -> str:
    return ".".join(str(part) for part in loc)


def validation_field_errors(exc: RequestValidationError) -> list[FieldError]:
    out: list[FieldError] = []
    for err in exc.errors():
        message = str(err.get("msg", "invalid value"))
        if message.startswith("Value error, "):
            message = message.removeprefix("Value error, ")
        out.append(FieldError(_location(err.get("loc", ())), message))
    return out


def install_problem_handlers(app: FastAPI) -> None:
    """Make every error leave this app as problem+json."""

    @app.exception_handler(DomainError)
    async def _domain(request: Request, exc: DomainError) -> JSONResponse:
        return problem_response(
            request,
            status=exc.status,
            slug=exc.slug,
            title=exc.title,
            detail=exc.detail,
            errors=exc.errors,
            headers=exc.headers,
            **exc.extensions,
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = validation_field_errors(exc)
        detail = "; ".join(f"{e.field}: {e.message}" for e in errors[:5])
        return problem_response(
            request,
            status=422,
            slug="validation-error",
            title="Request validation failed",
            detail=detail,
            errors=errors,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        title = {404: "Not found", 405: "Method not allowed", 401: "Authentication required"}.get(
            exc.status_code, "HTTP error"
        )
        return problem_response(
            request,
            status=exc.status_code,
            slug={404: "not-found", 405: "method-not-allowed"}.get(exc.status_code, "http-error"),
            title=title,
            detail=str(exc.detail) if exc.detail else None,
            headers=dict(exc.headers) if exc.headers else None,
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        from sqlalchemy.orm.exc import StaleDataError

        if isinstance(exc, StaleDataError):  # a concurrent writer changed the row first
            return problem_response(
                request,
                status=409,
                slug="conflict",
                title="Conflict",
                detail="The record was changed by another request at the same moment; nothing was "
                "changed by this one. Retry it.",
            )
        if database_unavailable(exc):
            log.warning("database_unavailable", path=request.url.path, error=repr(exc)[:300])
            return problem_response(
                request,
                status=503,
                slug="service-unavailable",
                title="Service unavailable",
                detail="The database is unavailable or restarting; nothing was changed. Retry shortly.",
                headers={"Retry-After": "2"},
            )
        log.exception("unhandled_error", path=request.url.path)
        return problem_response(
            request,
            status=500,
            slug="internal-error",
            title="Internal error",
            detail="An unexpected error occurred; it has been logged with the request id.",
        )


PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    422: {"model": Problem, "content": {PROBLEM_JSON: {}}, "description": "Invalid input (RFC 9457)"},
}
