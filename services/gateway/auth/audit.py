"""The audit log: every read and change of a customer's personal data through the gateway.

Who (subject, kind, roles), when, what (method, route template, path, customer id, status), why (the
optional `X-Purpose` header) and the request id. Written without adding latency: the middleware
only appends to an in-memory buffer; a background task writes the buffer in one batch every
`CRM_GATEWAY_AUDIT_FLUSH_INTERVAL` seconds (0.2 by default), and `stop()` flushes what is left, so
a clean shutdown loses nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.gateway.auth.models import audit_log
from shared.auth.guard import Access
from shared.logging import get_logger

log = get_logger(__name__)


class AuditWriter:
    def __init__(
        self, engine: AsyncEngine, *, flush_interval: float = 0.2, max_buffer: int = 100_000
    ) -> None:
        self.engine = engine
        self.flush_interval = flush_interval
        self.max_buffer = max_buffer
        self._buffer: list[dict[str, Any]] = []
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self.written = 0

    def record(self, entry: dict[str, Any]) -> None:
        if len(self._buffer) >= self.max_buffer:
            log.error("audit_buffer_full", dropped=1)
            return
        self._buffer.append(entry)

    async def flush(self) -> int:
        async with self._lock:
            if not self._buffer:
                return 0
            batch, self._buffer = self._buffer, []
            try:
                async with self.engine.begin() as conn:
                    await conn.execute(insert(audit_log), batch)
            except Exception as exc:
                log.error("audit_flush_failed", rows=len(batch), error=repr(exc))
                self._buffer[:0] = batch  # try again next time
                return 0
            self.written += len(batch)
            return len(batch)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.flush_interval)
            await self.flush()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="audit-writer")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.flush()


class AuditMiddleware:
    """Pure ASGI: after each response, log it if the guard marked it as personal data."""

    def __init__(self, app: ASGIApp, *, writer: AuditWriter) -> None:
        self.app = app
        self.writer = writer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        request_id: str | None = None

        async def capture(message: Message) -> None:
            nonlocal status, request_id
            if message["type"] == "http.response.start":
                status = message["status"]
                for name, value in message.get("headers", ()):
                    if name == b"x-request-id":
                        request_id = value.decode("latin-1")
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            access = scope.get("state", {}).get("access")
            if isinstance(access, Access) and access.principal is not None and access.rule.personal_data:
                self.writer.record(_entry(scope, access, status, request_id))


def _entry(scope: Scope, access: Access, status: int, request_id: str | None) -> dict[str, Any]:
    purpose = None
    for name, value in scope.get("headers", ()):
        if name == b"x-purpose":
            purpose = value.decode("latin-1")[:200]
            break
    principal = access.principal
    assert principal is not None
    return {
        "at": datetime.now(UTC),
        "actor_kind": principal.kind,
        "actor": principal.actor,
        "roles": ",".join(sorted(principal.roles))[:200],
        "method": str(scope.get("method", ""))[:10],
        "route": access.template[:300],
        "path": str(scope.get("path", ""))[:1000],
        "customer_id": access.customer_id[:36] if access.customer_id else None,
        "status": status,
        "purpose": purpose,
        "request_id": request_id,
    }
