"""Every query the notes package makes lives here."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.identity.notes.models import NoteRow


class NoteRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def list_for(
        self, customer_ids: Sequence[str], *, limit: int | None = None, offset: int = 0
    ) -> list[NoteRow]:
        """Pinned notes first, then newest first."""
        query = (
            select(NoteRow)
            .where(NoteRow.customer_id.in_(customer_ids))
            .order_by(NoteRow.pinned.desc(), NoteRow.created_at.desc(), NoteRow.id)
            .offset(offset)
        )
        if limit is not None:
            query = query.limit(limit)
        return list(await self.session.scalars(query))

    async def get_for(self, customer_ids: Sequence[str], note_id: str) -> NoteRow | None:
        return await self.session.scalar(
            select(NoteRow).where(NoteRow.id == note_id, NoteRow.customer_id.in_(customer_ids))
        )

    def add(self, row: NoteRow) -> None:
        self.session.add(row)

    async def delete(self, row: NoteRow) -> None:
        await self.session.delete(row)

    async def delete_all_for(self, customer_ids: Sequence[str]) -> None:
        await self.session.execute(delete(NoteRow).where(NoteRow.customer_id.in_(customer_ids)))
