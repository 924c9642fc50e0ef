"""Notes' HTTP routes."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response, status

from services.identity.consents.customers import CustomerIds, RequestActor
from services.identity.notes import service
from services.identity.notes.schemas import NoteCreate, NoteOut
from shared.errors import PROBLEM_RESPONSES, Problem
from shared.runtime import UowDep

router = APIRouter(prefix="/customers/{customer_id}/notes", tags=["notes"])

NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": Problem, "description": "No such customer"}}


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=NoteOut,
    summary="Write a note about a customer",
    description=(
        "A free-form note (up to 10,000 characters). Its author is the request's `X-Actor`, or the "
        "body's `author` without one. Pinned notes are listed first."
    ),
    responses={
        **PROBLEM_RESPONSES,
        **NOT_FOUND,
        410: {"model": Problem, "description": "The customer was erased"},
    },
)
async def add_note(customer_ids: CustomerIds, body: NoteCreate, uow: UowDep, actor: RequestActor) -> NoteOut:
    return NoteOut.model_validate(await service.add_note(uow, customer_ids, body, actor=actor))


@router.get(
    "",
    response_model=list[NoteOut],
    summary="A customer's notes",
    description=(
        "Pinned notes first, then the newest first; a golden record shows its merged customers' notes."
    ),
    responses={**PROBLEM_RESPONSES, **NOT_FOUND},
)
async def list_notes(
    customer_ids: CustomerIds,
    uow: UowDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[NoteOut]:
    notes = await service.list_notes(uow, customer_ids, limit=limit, offset=offset)
    return [NoteOut.model_validate(note) for note in notes]


@router.delete(
    "/{note_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a note",
    responses={404: {"model": Problem, "description": "No such customer, or no such note of theirs"}},
)
async def delete_note(customer_ids: CustomerIds, note_id: str, uow: UowDep) -> Response:
    await service.delete_note(uow, customer_ids, note_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
