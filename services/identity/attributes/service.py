"""Attribute definitions' use cases, and `load_definitions` for validating profile attributes.

Profile create/update call `load_definitions(session)` then `domain.validate_attributes(...)`.
Definitions can be replaced or deleted at any time: this package cannot see which profiles carry a
value, so values already stored are not re-checked; new writes are validated against the current
definitions.

Definitions are not personal data, and attribute values live on the customer profile: the export
describes the attributes (so a customer can read what each value means) and erasure has nothing to
delete here.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.identity.attributes.domain import AttributeSpec, AttributeType
from services.identity.attributes.domain import validate_attributes as validate_attributes  # for callers
from services.identity.attributes.models import AttributeDefinitionRow
from services.identity.attributes.repository import AttributeDefinitionRepository
from services.identity.attributes.schemas import AttributeDefinitionIn
from shared.errors import Conflict, NotFound
from shared.uow import UnitOfWork


def spec_of(row: AttributeDefinitionRow) -> AttributeSpec:
    return AttributeSpec(
        name=row.name,
        type=AttributeType(row.type),
        required=row.required,
        enum_values=tuple(row.enum_values or ()),
        max_length=row.max_length,
        min_value=row.min_value,
        max_value=row.max_value,
        description=row.description,
    )


async def load_definitions(session: AsyncSession) -> dict[str, AttributeSpec]:
    """Every attribute definition by name, in the caller's session, ready for `validate_attributes`."""
    return {row.name: spec_of(row) for row in await AttributeDefinitionRepository(session).list_all()}


async def list_definitions(uow: UnitOfWork) -> list[AttributeDefinitionRow]:
    async with uow:
        return await AttributeDefinitionRepository(uow.session).list_all()


async def get_definition(uow: UnitOfWork, name: str) -> AttributeDefinitionRow:
    async with uow:
        row = await AttributeDefinitionRepository(uow.session).get(name)
    if row is None:
        raise NotFound(f"attribute {name} is not defined", name=name)
    return row


async def put_definition(
    uow: UnitOfWork, name: str, data: AttributeDefinitionIn
) -> tuple[AttributeDefinitionRow, bool]:
    """Create or replace a definition. Returns (definition, created)."""
    now = datetime.now(UTC)
    async with uow:
        repo = AttributeDefinitionRepository(uow.session)
        row = await repo.get(name, for_update=True)
        created = row is None
        if row is None:
            row = AttributeDefinitionRow(name=name, created_at=now)
            repo.add(row)
        row.type = data.type.value
        row.required = data.required
        row.description = data.description
        row.enum_values = data.enum_values
        row.max_length = data.max_length
        row.min_value = data.min_value
        row.max_value = data.max_value
        row.updated_at = now
        try:
            await uow.session.flush()
        except IntegrityError as exc:
            raise Conflict(f"attribute {name} was defined concurrently; retry", name=name) from exc
        await uow.commit()
    return row, created


async def delete_definition(uow: UnitOfWork, name: str) -> None:
    async with uow:
        repo = AttributeDefinitionRepository(uow.session)
        row = await repo.get(name, for_update=True)
        if row is None:
            raise NotFound(f"attribute {name} is not defined", name=name)
        await repo.delete(row)
        await uow.commit()


async def export_customer_data(session: AsyncSession, customer_ids: Sequence[str]) -> dict[str, Any]:
    """Right of access: what each custom attribute means (the values are in the profile's export)."""
    del customer_ids  # the same for every customer
    return {
        "attribute_definitions": [
            {"name": spec.name, "type": spec.type.value, "description": spec.description}
            for spec in (await load_definitions(session)).values()
        ]
    }


async def erase_customer_data(session: AsyncSession, customer_ids: Sequence[str]) -> None:
    """Right to erasure: nothing here is personal data (values are erased with the profile)."""
    del session, customer_ids
