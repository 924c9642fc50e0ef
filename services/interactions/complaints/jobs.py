"""Background jobs of complaints: the SLA watch, which escalates overdue complaints every
`complaint_sla_scan_interval` seconds. Safe to run in every replica (see `sla.scan`)."""

from __future__ import annotations

import asyncio

from services.interactions.complaints import sla
from shared.logging import get_logger
from shared.runtime import ServiceRuntime

log = get_logger(__name__)
DEFAULT_INTERVAL = 60.0


def register(runtime: ServiceRuntime) -> None:
    """Attach the complaints' background jobs to the service runtime."""
    interval = float(getattr(runtime.settings, "complaint_sla_scan_interval", DEFAULT_INTERVAL))
    if interval <= 0:
        return

    async def sla_watch() -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                escalated = await sla.scan(runtime.uow)
            except Exception:  # a failed run (database away) must not end the watch: retry next time
                log.exception("complaint_sla_scan_failed")
                continue
            if escalated:
                log.info(
                    "complaint_sla_escalated",
                    count=len(escalated),
                    complaints=sorted({e.complaint_id for e in escalated})[:20],
                )

    runtime.add_background(sla_watch)
