"""Request-scoped context carried across HTTP calls and events: the request id and the W3C trace parent.

An HTTP request sets it from `X-Request-ID` (or makes a new one); events written during that
request carry it in their envelope (`requestid` extension), and a consumer handling such an event
restores it, so one id follows a customer's action through every service's logs.
"""

from __future__ import annotations

import uuid
from contextvars import ContextVar

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)
actor_var: ContextVar[str | None] = ContextVar("actor", default=None)


def new_request_id() -> str:
    return uuid.uuid4().hex


def current_request_id() -> str | None:
    return request_id_var.get()
