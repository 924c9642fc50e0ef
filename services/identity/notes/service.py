"""Notes' use cases, and their right-of-access and erasure parts.

Notes are written under the golden record's id and read across all its ids. Erasure deletes every
note: free text about a person is personal data through and through, and nothing requires keeping it.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.identity.consents.customers import require_customer
from services.identity.notes.models import NoteRow
from services.identity.notes.repository import NoteRepository
from services.identity.notes.schemas import NoteCreate, NoteOut
from shared.errors import InvalidInput, NotFound
from shared.uow import UnitOfWork


async def add_note(
    uow: UnitOfWork, customer_ids: Sequence[str], data: NoteCreate, *, actor: str | None = None
) -> NoteRow:
    """Write a note; its author is the acting user, else the body's `author` (one of them is needed)."""
    author = actor or data.author
    if author is None:
        raise InvalidInput("body.author", "name the author, or send the request with X-Actor")
    note = NoteRow(
        id=str(uuid.uuid4()),
        customer_id=customer_ids[0],
        text=data.text,
        author=author,
        pinned=data.pinned,
        created_at=datetime.now(UTC),
    )
    async with uow:
        await require_customer(uow.session, customer_ids[0], writable=True)
        NoteRepository(uow.session).add(note)
        await uow.commit()
    return note


async def list_notes(
    uow: UnitOfWork, customer_ids: Sequence[str], *, limit: int = 50, offset: int = 0
) -> list[NoteRow]:
    async with uow:
        await require_customer(uow.session, customer_ids[0])
        return await NoteRepository(uow.session).list_for(customer_ids, limit=limit, offset=offset)


async def delete_note(uow: UnitOfWork, customer_ids: Sequence[str], note_id: str) -> None:
    async with uow:
        await require_customer(uow.session, customer_ids[0])
        repo = NoteRepository(uow.session)
        note = await repo.get_for(customer_ids, note_id)
        if note is None:
            raise NotFound(f"customer {customer_ids[0]} has no note {note_id}", note_id=note_id)
        await repo.delete(note)
        await uow.commit()


async def export_customer_data(session: AsyncSession, customer_ids: Sequence[str]) -> dict[str, Any]:
    """Right of access: every note about the customer."""
    notes = await NoteRepository(session).list_for(customer_ids)
    return {"notes": [NoteOut.model_validate(note).model_dump(mode="json") for note in notes]}


async def erase_customer_data(session: AsyncSession, customer_ids: Sequence[str]) -> None:
    """Right to erasure, in the caller's transaction: delete every note."""
    await NoteRepository(session).delete_all_for(customer_ids)
