"""Errors in the OpenAPI documents as they are sent: RFC 9457 problem details.

Every error of every app is `application/problem+json` (`shared.errors`), but FastAPI documents its
422 as `application/json` with its own `HTTPValidationError` schema, and nothing else. This rewrites
each app's document once, when it is first built: every 4xx/5xx response an operation declares is
`application/problem+json` with the `Problem` schema, and every operation has a `default` response
saying so — any status not listed (401, 403, 404, 409, 429, 503 …) is a problem document. Tools
that check responses against the document (Schemathesis's status-code and content-type checks, client
generators) then see what the platform really sends.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from shared.errors import PROBLEM_JSON, Problem

REF = "#/components/schemas/"
METHODS = ("get", "put", "post", "delete", "patch", "head", "options")
FASTAPI_ERROR_SCHEMAS = ("HTTPValidationError", "ValidationError")
DEFAULT_DESCRIPTION = (
    "An error, as RFC 9457 problem details (`application/problem+json`): 401 without a valid token, "
    "403 not allowed, 404 not found, 409 conflict, 413 too large, 422 invalid input (each field at "
    "fault in `errors`), 429 rate limited and 503 unavailable or overloaded (both with `Retry-After`)"
)


def _problem_content(existing: dict[str, Any] | None) -> dict[str, Any]:
    media: dict[str, Any] = {"schema": {"$ref": REF + "Problem"}}
    for content in (existing or {}).values():  # keep an example a route gave
        if isinstance(content, dict):
            for key in ("example", "examples"):
                if key in content:
                    media[key] = content[key]
    return {PROBLEM_JSON: media}


def document_problems(spec: dict[str, Any]) -> dict[str, Any]:
    """Rewrite `spec` in place (and return it): errors as problem details, a `default` response."""
    schemas: dict[str, Any] = spec.setdefault("components", {}).setdefault("schemas", {})
    problem = Problem.model_json_schema(ref_template=REF + "{model}")
    for name, schema in problem.pop("$defs", {}).items():
        schemas.setdefault(name, schema)
    schemas.setdefault("Problem", problem)
    for item in spec.get("paths", {}).values():
        for method in METHODS:
            operation = item.get(method)
            if not isinstance(operation, dict):
                continue
            responses: dict[str, Any] = operation.setdefault("responses", {})
            for code, response in responses.items():
                if code == "default" or str(code)[:1] in ("4", "5"):
                    response["content"] = _problem_content(response.get("content"))
            responses.setdefault(
                "default", {"description": DEFAULT_DESCRIPTION, "content": _problem_content(None)}
            )
    text = repr(spec.get("paths", {})) + repr(
        {k: v for k, v in schemas.items() if k not in FASTAPI_ERROR_SCHEMAS}
    )
    for name in FASTAPI_ERROR_SCHEMAS:
        if REF + name not in text:
            schemas.pop(name, None)
    return spec


def install(app: FastAPI) -> None:
    """Make `app.openapi()` return its document with `document_problems` applied (built once)."""
    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = document_problems(original())
        app.openapi_schema = document
        return document

    app.openapi = openapi  # type: ignore[method-assign]
