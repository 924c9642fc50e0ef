"""Attribute definitions' HTTP routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response, status

from services.identity.attributes import service
from services.identity.attributes.domain import NAME_PATTERN
from services.identity.attributes.schemas import AttributeDefinitionIn, AttributeDefinitionOut
from shared.errors import PROBLEM_RESPONSES, Problem
from shared.runtime import UowDep

router = APIRouter(prefix="/attribute-definitions", tags=["attribute definitions"])

AttributeName = Annotated[
    str,
    Path(
        pattern=NAME_PATTERN,
        max_length=63,
        description="snake_case identifier: the key under the profile's `attributes`",
        examples=["club_level"],
    ),
]


@router.get(
    "",
    response_model=list[AttributeDefinitionOut],
    summary="The custom attribute schema",
    description="Every custom attribute a customer profile may carry, by name.",
)
async def list_definitions(uow: UowDep) -> list[AttributeDefinitionOut]:
    return [AttributeDefinitionOut.model_validate(row) for row in await service.list_definitions(uow)]


@router.get(
    "/{name}",
    response_model=AttributeDefinitionOut,
    summary="One custom attribute's definition",
    responses={**PROBLEM_RESPONSES, 404: {"model": Problem, "description": "No such attribute"}},
)
async def read_definition(name: AttributeName, uow: UowDep) -> AttributeDefinitionOut:
    return AttributeDefinitionOut.model_validate(await service.get_definition(uow, name))


@router.put(
    "/{name}",
    response_model=AttributeDefinitionOut,
    summary="Define a custom attribute",
    description=(
        "Creates (201) or replaces (200) the definition of a custom profile attribute: its type "
        "(`string`, `integer`, `boolean`, `date`, `enum`, `decimal_minor` = integer minor units), "
        "allowed values, bounds and whether profiles must carry it. Profiles are validated against "
        "the definitions when they are created or updated; existing values are not re-checked."
    ),
    responses={**PROBLEM_RESPONSES, 201: {"model": AttributeDefinitionOut, "description": "Defined"}},
)
async def put_definition(
    name: AttributeName, body: AttributeDefinitionIn, uow: UowDep, response: Response
) -> AttributeDefinitionOut:
    row, created = await service.put_definition(uow, name, body)
    if created:
        response.status_code = status.HTTP_201_CREATED
        response.headers["Location"] = f"/attribute-definitions/{name}"
    return AttributeDefinitionOut.model_validate(row)


@router.delete(
    "/{name}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Remove a custom attribute",
    description=(
        "Deletes the definition. Profiles are not checked for values of it (this service cannot know "
        "which carry one): values already stored stay until the profile's attributes are next written, "
        "and from then on the attribute is refused as unknown."
    ),
    responses={**PROBLEM_RESPONSES, 404: {"model": Problem, "description": "No such attribute"}},
)
async def delete_definition(name: AttributeName, uow: UowDep) -> Response:
    await service.delete_definition(uow, name)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
