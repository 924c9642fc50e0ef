"""Scheduled passes of programs' rules: the birthday bonus and the tier review (downgrades at period
end after the grace period, "will downgrade" warnings). Both are idempotent (a birthday bonus once
per member and year, a period reviewed and warned about once), so running them often, or in every
replica at once, grants nothing twice; the interval only bounds how late they can be.

The interval is `rules_job_interval` seconds when the service settings define it (default one hour;
0 or less: no scheduled passes, e.g. when an external scheduler calls `run_once`)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from services.loyalty.rules import service as rules
from services.loyalty.rules import tiers
from shared.logging import get_logger
from shared.runtime import ServiceRuntime
from shared.uow import UnitOfWorkFactory

log = get_logger(__name__)
DEFAULT_INTERVAL = 3600.0


async def run_once(uow_factory: UnitOfWorkFactory, *, now: datetime | None = None) -> dict[str, int]:
    """One pass of both jobs as of `now` (injectable for tests and back-fills)."""
    now = now or datetime.now(UTC)
    granted = await rules.birthdays(uow_factory, now=now)
    reviewed = await tiers.review_all(uow_factory, now=now)
    return {"birthday_bonuses": granted, **reviewed}


def register(runtime: ServiceRuntime) -> None:
    """Attach the rules' scheduled passes to the service runtime."""
    interval = float(getattr(runtime.settings, "rules_job_interval", DEFAULT_INTERVAL))
    if interval <= 0:
        return

    async def scheduled() -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                outcome = await run_once(runtime.uow)
            except Exception:  # a failed pass (database away) must not end the schedule: retry next time
                log.exception("loyalty_rules_pass_failed")
                continue
            if any(outcome.values()):
                log.info("loyalty_rules_pass", **outcome)

    runtime.add_background(scheduled)
