"""Every query the attributes package makes lives here."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.identity.attributes.models import AttributeDefinitionRow


class AttributeDefinitionRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def list_all(self) -> list[AttributeDefinitionRow]:
        return list(
            await self.session.scalars(select(AttributeDefinitionRow).order_by(AttributeDefinitionRow.name))
        )

    async def get(self, name: str, *, for_update: bool = False) -> AttributeDefinitionRow | None:
        return await self.session.get(AttributeDefinitionRow, name, with_for_update=for_update)

    def add(self, row: AttributeDefinitionRow) -> None:
        self.session.add(row)

    async def delete(self, row: AttributeDefinitionRow) -> None:
        await self.session.delete(row)
