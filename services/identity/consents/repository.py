"""Every query the consents package makes lives here. All of them take the golden record's ids."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.identity.consents.models import ConsentHistoryRow, ConsentRow, ContactPreferencesRow


class ConsentRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def current_rows(
        self,
        customer_ids: Sequence[str],
        *,
        channel: str | None = None,
        purpose: str | None = None,
        for_update: bool = False,
    ) -> list[ConsentRow]:
        """The latest row of each id (one golden record has one per merged id and pair)."""
        query = select(ConsentRow).where(ConsentRow.customer_id.in_(customer_ids))
        if channel is not None:
            query = query.where(ConsentRow.channel == str(channel))
        if purpose is not None:
            query = query.where(ConsentRow.purpose == str(purpose))
        if for_update:
            query = query.with_for_update()
        return list(await self.session.scalars(query.order_by(ConsentRow.channel, ConsentRow.purpose)))

    async def history(
        self,
        customer_ids: Sequence[str],
        *,
        channel: str | None = None,
        purpose: str | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[ConsentHistoryRow]:
        """Recorded choices, newest first."""
        query = select(ConsentHistoryRow).where(ConsentHistoryRow.customer_id.in_(customer_ids))
        if channel is not None:
            query = query.where(ConsentHistoryRow.channel == str(channel))
        if purpose is not None:
            query = query.where(ConsentHistoryRow.purpose == str(purpose))
        newest_first = (ConsentHistoryRow.changed_at.desc(), ConsentHistoryRow.id.desc())
        query = query.order_by(*newest_first).offset(offset)
        if limit is not None:
            query = query.limit(limit)
        return list(await self.session.scalars(query))

    async def preferences(self, customer_ids: Sequence[str]) -> list[ContactPreferencesRow]:
        return list(
            await self.session.scalars(
                select(ContactPreferencesRow).where(ContactPreferencesRow.customer_id.in_(customer_ids))
            )
        )

    async def get_preferences(self, customer_id: str) -> ContactPreferencesRow | None:
        return await self.session.get(ContactPreferencesRow, customer_id)

    def add(self, row: ConsentRow | ConsentHistoryRow | ContactPreferencesRow) -> None:
        self.session.add(row)

    async def forget_evidence(self, customer_ids: Sequence[str]) -> None:
        """Erasure: keep what was chosen and when, drop the free text and who recorded it."""
        for table in (ConsentRow, ConsentHistoryRow):
            await self.session.execute(
                update(table).where(table.customer_id.in_(customer_ids)).values(evidence=None, actor=None)
            )
