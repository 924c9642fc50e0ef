"""Consents' HTTP routes (thin: parse, resolve the golden record, call a use case)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from services.identity.consents import service
from services.identity.consents.customers import CustomerIds, RequestActor
from services.identity.consents.domain import Channel, Purpose
from services.identity.consents.schemas import (
    ConsentChange,
    ConsentHistoryOut,
    ConsentOut,
    ConsentsOut,
    ContactPreferencesIn,
    ContactPreferencesOut,
)
from shared.errors import PROBLEM_RESPONSES, Problem
from shared.runtime import UowDep

router = APIRouter(prefix="/customers/{customer_id}", tags=["consents"])

NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": Problem, "description": "No such customer"}}
GONE: dict[int | str, dict[str, Any]] = {410: {"model": Problem, "description": "The customer was erased"}}


@router.get(
    "/consents",
    response_model=ConsentsOut,
    summary="A customer's consents and contact preferences",
    description=(
        "The current consent for every channel × purpose ever recorded, and the contact preferences. "
        "For a golden record that absorbed other customers, the most recent choice among all of them "
        "counts. A pair never recorded means no consent."
    ),
    responses=NOT_FOUND,
)
async def read_consents(customer_ids: CustomerIds, uow: UowDep) -> ConsentsOut:
    return await service.get_consents(uow, customer_ids)


@router.put(
    "/consents/{channel}/{purpose}",
    response_model=ConsentOut,
    summary="Record a consent choice",
    description=(
        "Records that the customer granted, denied or withdrew consent for a channel and purpose, how "
        "it reached us (`source`), the proof (`evidence`) and who recorded it (the `X-Actor` of the "
        "request). Every choice is kept in the history; "
        "`crm.identity.consent_changed.v1` is published only when the status actually changes. "
        "Withdrawing a consent never granted is allowed and recorded."
    ),
    responses={
        **PROBLEM_RESPONSES,
        **NOT_FOUND,
        **GONE,
        409: {"model": Problem, "description": "Concurrent change"},
    },
)
async def put_consent(
    channel: Annotated[Channel, Path(description="Channel the consent is about")],
    purpose: Annotated[Purpose, Path(description="Purpose the consent is about")],
    body: ConsentChange,
    customer_ids: CustomerIds,
    uow: UowDep,
    actor: RequestActor,
) -> ConsentOut:
    return await service.set_consent(uow, customer_ids, channel, purpose, body, actor=actor)


@router.get(
    "/consents/history",
    response_model=list[ConsentHistoryOut],
    summary="Every consent choice the customer made",
    description="The append-only record of choices, newest first, optionally for one channel or purpose.",
    responses={**PROBLEM_RESPONSES, **NOT_FOUND},
)
async def read_consent_history(
    customer_ids: CustomerIds,
    uow: UowDep,
    channel: Channel | None = None,
    purpose: Purpose | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[ConsentHistoryOut]:
    return await service.consent_history(
        uow, customer_ids, channel=channel, purpose=purpose, limit=limit, offset=offset
    )


@router.put(
    "/contact-preferences",
    response_model=ContactPreferencesOut,
    summary="Set contact preferences",
    description=(
        "Replaces the customer's contact preferences: do-not-contact (overrides every consent), "
        "preferred channel and language, and quiet hours in the customer's time zone."
    ),
    responses={**PROBLEM_RESPONSES, **NOT_FOUND, **GONE},
)
async def put_contact_preferences(
    body: ContactPreferencesIn, customer_ids: CustomerIds, uow: UowDep, actor: RequestActor
) -> ContactPreferencesOut:
    return await service.set_contact_preferences(uow, customer_ids, body, actor=actor)
