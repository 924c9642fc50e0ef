"""HTTP routes: satisfaction surveys (CSAT, NPS, attribute ratings)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from services.interactions.routes import DirectoryDep
from services.interactions.surveys import domain, service
from services.interactions.surveys.schemas import (
    AttributeOut,
    Catalogue,
    SurveyCreate,
    SurveyOut,
    SurveyPage,
    survey_out,
)
from shared.errors import PROBLEM_RESPONSES, Problem
from shared.runtime import UowDep

router = APIRouter(tags=["surveys"])


@router.post(
    "/surveys",
    status_code=status.HTTP_201_CREATED,
    response_model=SurveyOut,
    summary="Record a survey answer",
    description=(
        "A customer's answers to a satisfaction survey, usually sent after a contact "
        "(`about_interaction_id`, which must be one of this customer's contacts): `csat` (1–5), `nps` "
        "(0–10) and/or `ratings` of the catalogue's attributes (1–5 each; see `GET /surveys/attributes`); "
        "at least one of the three. `expectations` (same attributes, 1–5) let the answer show "
        "performance against expectation (`gaps`). The overall score is the sum over the rated "
        "attributes, with the most it could have been. The survey is a contact too: it appears on the "
        "customer's timeline (kind `survey_answer`, subject `survey`), and "
        "`crm.interactions.survey_answered.v1` is published (scores only, never the comment) in the "
        "same transaction. The same `idempotency_key` from the same `source_system` records the survey "
        "once: a repeat returns the first with 200."
    ),
    responses={**PROBLEM_RESPONSES, 200: {"model": SurveyOut, "description": "Already recorded"}},
)
async def create_survey(
    body: SurveyCreate, uow: UowDep, directory: DirectoryDep, response: Response
) -> SurveyOut:
    survey, created = await service.record(uow, directory, body)
    if not created:
        response.status_code = status.HTTP_200_OK
    response.headers["Location"] = f"/surveys/{survey.id}"
    return survey_out(survey)


@router.get(
    "/surveys/attributes",
    response_model=Catalogue,
    summary="The attributes a survey can rate",
    description=(
        "The attribute catalogue, grouped as people (courtesy, competence), product (quality, price, "
        "variety) and premises (cleanliness, comfort), each rated 1–5."
    ),
)
async def attribute_catalogue() -> Catalogue:
    return Catalogue(
        attributes=[
            AttributeOut(name=name, group=group, description=domain.DESCRIPTIONS[name])
            for name, group in domain.CATALOGUE.items()
        ]
    )


@router.get(
    "/surveys/{survey_id}",
    response_model=SurveyOut,
    summary="Read a survey answer",
    description="The answers, the overall score (and per group), the NPS category and the expectation gaps.",
    responses={404: {"model": Problem, "description": "No such survey"}},
)
async def read_survey(survey_id: str, uow: UowDep) -> SurveyOut:
    return survey_out(await service.get(uow, survey_id))


@router.get(
    "/customers/{customer_id}/surveys",
    response_model=SurveyPage,
    summary="A customer's survey answers",
    description=(
        "Newest first, keyset-paginated: pass `next_cursor` back as `cursor`. A merged customer's id "
        "shows the survivor's surveys, which include the merged customer's."
    ),
    responses={**PROBLEM_RESPONSES, 404: {"model": Problem}, 410: {"model": Problem}},
)
async def customer_surveys(
    customer_id: str,
    uow: UowDep,
    directory: DirectoryDep,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=service.MAX_PAGE)] = 50,
) -> SurveyPage:
    rows, next_cursor = await service.customer_surveys(
        uow, directory, customer_id, cursor=cursor, limit=limit
    )
    return SurveyPage(items=[survey_out(row) for row in rows], next_cursor=next_cursor)
