"""Rewards' background job: reservations past `expires_at` are expired every
`reward_expiry_scan_interval` seconds (default 30): points back into their lots, the held unit back
into stock, status `expired`. Safe in every replica: each reservation is expired in a transaction of
its own that skips rows another worker (or a concurrent confirm/cancel) holds."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from services.loyalty.rewards import service
from shared.logging import get_logger
from shared.runtime import ServiceRuntime
from shared.uow import UnitOfWorkFactory

log = get_logger(__name__)
DEFAULT_INTERVAL = 30.0
BATCH = 200


async def expire_reservations(
    uow: UnitOfWorkFactory, now: datetime | None = None, *, limit: int = BATCH
) -> list[str]:
    """One pass: expire up to `limit` overdue reservations; returns the ids expired."""
    now = now or datetime.now(UTC)
    async with uow() as reading:
        due = await service.due_reservations(reading.session, now, limit=limit)
    expired: list[str] = []
    for redemption_id in due:
        async with uow() as work:
            if await service.expire_one(work, redemption_id, now):
                await work.commit()
                expired.append(redemption_id)
    return expired


def register(runtime: ServiceRuntime) -> None:
    """Attach the reservation expiry watch to the service runtime."""
    interval = float(getattr(runtime.settings, "reward_expiry_scan_interval", DEFAULT_INTERVAL))
    if interval <= 0:
        return

    async def expiry_watch() -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                expired = await expire_reservations(runtime.uow)
            except Exception:  # a failed run (database away) must not end the watch: retry next time
                log.exception("reward_reservation_expiry_failed")
                continue
            if expired:
                log.info("reward_reservations_expired", count=len(expired), redemptions=expired[:20])

    runtime.add_background(expiry_watch)
