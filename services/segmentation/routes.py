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
    description=(
        "Purchases, spend and refunds (main currency, and every currency in `spend`), the rhythm of "
        "purchases, channels used, contacts, complaints (open, unanswered, SLA breaches) and the latest "
        "satisfaction — kept current from events; a merged id shows the survivor's."
    ),
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


operations = APIRouter(tags=["features"])


@operations.post(
    "/features/recompute",
    summary="Recompute every customer's features from the stored facts",
    description="The replay path: the same computation as each event's, over everyone. Returns how many.",
)
async def recompute_features(uow: UowDep) -> dict[str, int]:
    return {"customers": await service.recompute(uow)}
