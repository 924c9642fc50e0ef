"""Segmentation's composition root."""

from __future__ import annotations

from pathlib import Path

from services.segmentation import consumers, routes
from services.segmentation import service as feature_service
from services.segmentation.analytics import routes as analytics_routes
from services.segmentation.insights import models as _insight_models  # noqa: F401 (tables)
from services.segmentation.insights import routes as insight_routes
from services.segmentation.models import MESSAGING, metadata
from services.segmentation.segments import models as _segment_models  # noqa: F401 (tables)
from services.segmentation.segments import routes as segment_routes
from services.segmentation.segments import service as segment_service
from services.segmentation.settings import SegmentationSettings, load_settings
from services.segmentation.value import models as _value_models  # noqa: F401 (tables)
from services.segmentation.value import routes as value_routes
from services.segmentation.value import service as value_service
from shared.messaging.bus import EventBus
from shared.runtime import ServiceRuntime
from shared.uow import UnitOfWork

MIGRATIONS = Path(__file__).parent / "migrations"


async def _score(uow: UnitOfWork, customer_ids: list[str]) -> None:
    """Value, risk and ladder stage of customers whose features just changed."""
    await value_service.score_customers(uow.session, uow, customer_ids)


async def _segments(uow: UnitOfWork, customer_ids: list[str]) -> None:
    """Their segments, re-evaluated after value and risk (rules may use tier, risk and stage)."""
    await segment_service.reevaluate(
        uow.session,
        uow,
        customer_ids,
        changed=feature_service.CHANGED.get(),
        cause=feature_service.CAUSE.get(),
    )


async def _score_everyone(uow: UnitOfWork) -> None:
    await value_service.score_everyone(uow)


async def _segments_everyone(uow: UnitOfWork) -> None:
    await segment_service.reapply_all(uow)


def build(settings: SegmentationSettings | None = None, bus: EventBus | None = None) -> ServiceRuntime:
    settings = settings or load_settings()
    runtime = ServiceRuntime.create(
        settings,
        bus,
        metadata=metadata,
        tables=MESSAGING,
        migrations=MIGRATIONS,
        title="CRM segmentation service",
        description="Customer value, risk, stage and segments.",
    )
    runtime.include_router(routes.router)
    runtime.include_router(routes.operations)
    runtime.include_router(segment_routes.router)
    runtime.include_router(value_routes.router)
    runtime.include_router(analytics_routes.router)
    runtime.include_router(insight_routes.clusters_router)
    runtime.include_router(insight_routes.playbooks_router)
    # value and risk ignore contacts
    feature_service.on_refreshed(_score, after_contacts=False, everyone=_score_everyone)
    feature_service.on_refreshed(_segments, everyone=_segments_everyone)
    consumers.register(runtime.consumer)
    runtime.add_background(segment_service.scheduler(runtime.uow))
    runtime.add_background(lambda: value_service.scheduled(runtime.uow))
    runtime.subscribe()
    return runtime


def create_app() -> object:
    return build().app
