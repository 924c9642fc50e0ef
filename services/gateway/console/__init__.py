"""The staff console: a static single-page application served by the gateway under `/console/`.

Plain HTML, CSS and JavaScript modules (no build step, nothing fetched from elsewhere at run time), so
`crm run` serves it on a machine with nothing but Python. It talks only to the public API through the
gateway (`/auth/token`, `/api/...`) with the signed-in staff member's token: anything it does, an
integrator can do, and the gateway's access policy decides every request.

The files are a mount, not API routes: they hold no data, need no token (the sign-in page must load
before there is one) and so stay out of the access policy's route table and the OpenAPI document.
"""

from __future__ import annotations

import os
from pathlib import Path

from fastapi import FastAPI
from starlette.responses import Response
from starlette.staticfiles import PathLike, StaticFiles
from starlette.types import Scope

STATIC = Path(__file__).parent / "static"

# Everything the page loads comes from the gateway itself; charts are inline SVG built with the DOM.
SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
}


class ConsoleFiles(StaticFiles):
    """The console's files with security headers; revalidated on every load (`no-cache`), so a new
    version of the platform never runs with yesterday's scripts."""

    def file_response(
        self, full_path: PathLike, stat_result: os.stat_result, scope: Scope, status_code: int = 200
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers.update(SECURITY_HEADERS)
        response.headers["cache-control"] = "no-cache"
        return response


def install(app: FastAPI) -> None:
    """Serve the console at `/console/` (`/console` redirects there)."""
    app.mount("/console", ConsoleFiles(directory=STATIC, html=True), name="console")
