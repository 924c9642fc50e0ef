"""Segmentation's HTTP routes."""

from __future__ import annotations

from fastapi import APIRouter

from services.segmentation import service
from services.segmentation.schemas import FeaturesOut
from shared.errors import NotFound, Problem
from shared.runtime import UowDep

router = APIRouter(prefix="/customers", tags=["features"])


@router.get(
    "/{customer_id}/features",
    response_model=FeaturesOut,
    summary="A customer's behavioural features",
    description="Purchase count, first/last purchase and total spend per currency, kept current from events.",
    responses={404: {"model": Problem, "description": "No event about this customer has arrived yet"}},
)
async def read_features(customer_id: str, uow: UowDep) -> FeaturesOut:
    return await service.features(uow, customer_id)


@router.get("/{customer_id}/export", tags=["privacy"], summary="Right of access: what segmentation derived")
async def export_customer(customer_id: str, uow: UowDep) -> dict[str, object]:
    try:
        features = (await service.features(uow, customer_id)).model_dump(mode="json")
    except NotFound:
        features = None
    return {"features": features}
