"""Loyalty's composition root."""

from __future__ import annotations

from pathlib import Path

from services.loyalty import consumers, household_routes, jobs, routes
from services.loyalty import segments as _segments  # noqa: F401  (its table)
from services.loyalty import tables as _tables  # noqa: F401  (households, expiry notices, known customers)
from services.loyalty.models import MESSAGING, metadata
from services.loyalty.reports import routes as report_routes
from services.loyalty.rewards import jobs as reward_jobs
from services.loyalty.rewards import models as _reward_models  # noqa: F401  (rewards, redemptions, partners)
from services.loyalty.rewards import routes as reward_routes
from services.loyalty.rules import jobs as rule_jobs
from services.loyalty.rules import models as _rule_models  # noqa: F401  (earning rules, referrals, tier reviews)
from services.loyalty.rules import routes as rule_routes
from services.loyalty.settings import LoyaltySettings, load_settings
from shared.messaging.bus import EventBus
from shared.runtime import ServiceRuntime

MIGRATIONS = Path(__file__).parent / "migrations"


def build(settings: LoyaltySettings | None = None, bus: EventBus | None = None) -> ServiceRuntime:
    settings = settings or load_settings()
    runtime = ServiceRuntime.create(
        settings,
        bus,
        metadata=metadata,
        tables=MESSAGING,
        migrations=MIGRATIONS,
        title="CRM loyalty service",
        description="Points ledger, earning, rewards, tiers.",
    )
    runtime.include_router(routes.router)
    runtime.include_router(routes.customers)
    runtime.include_router(household_routes.router)
    runtime.include_router(report_routes.router)
    runtime.include_router(reward_routes.router)
    runtime.include_router(rule_routes.router)
    jobs.register(runtime)
    reward_jobs.register(runtime)  # reservations past their hold expire: points and stock given back
    rule_jobs.register(runtime)  # birthday bonuses, tier reviews and downgrade warnings
    consumers.register(runtime.consumer)
    runtime.subscribe()
    return runtime


def create_app() -> object:
    return build().app
