"""Every query loyalty makes lives here."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from services.loyalty.domain import Posting, balanced
from services.loyalty.models import Account, LedgerEntry, LedgerTransaction


def member_account_id(customer_id: str) -> str:
    return f"member:{customer_id}:points"


ISSUED_ACCOUNT_ID = "program:default:issued"


class LedgerRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def ensure_account(self, account_id: str, owner_kind: str, owner_id: str, kind: str) -> None:
        dialect = self.session.bind.dialect.name if self.session.bind is not None else "sqlite"
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        await self.session.execute(
            insert(Account)
            .values(
                id=account_id,
                owner_kind=owner_kind,
                owner_id=owner_id,
                kind=kind,
                balance=0,
                created_at=datetime.now(UTC),
            )
            .on_conflict_do_nothing()
        )

    async def account(self, account_id: str) -> Account | None:
        return await self.session.get(Account, account_id)

    async def transaction_for(self, reference: str) -> LedgerTransaction | None:
        return await self.session.scalar(
            select(LedgerTransaction).where(LedgerTransaction.reference == reference)
        )

    async def post(
        self, *, kind: str, reference: str, customer_id: str | None, postings: list[Posting]
    ) -> str:
        """Write one balanced transaction and move the cached balances with it. Returns its id."""
        balanced(postings)
        transaction_id = str(uuid.uuid4())
        self.session.add(
            LedgerTransaction(
                id=transaction_id,
                kind=kind,
                reference=reference,
                customer_id=customer_id,
                created_at=datetime.now(UTC),
            )
        )
        await self.session.flush()
        self.session.add_all(
            LedgerEntry(transaction_id=transaction_id, account_id=p.account_id, amount=p.amount, line_no=i)
            for i, p in enumerate(postings, start=1)
        )
        for posting in sorted(postings, key=lambda p: p.account_id):  # fixed lock order: no deadlocks
            await self.session.execute(
                update(Account)
                .where(Account.id == posting.account_id)
                .values(balance=Account.balance + posting.amount)
            )
        await self.session.flush()
        return transaction_id

    async def history(self, account_id: str, *, limit: int) -> list[tuple[LedgerTransaction, int]]:
        rows = await self.session.execute(
            select(LedgerTransaction, LedgerEntry.amount)
            .join(LedgerEntry, LedgerEntry.transaction_id == LedgerTransaction.id)
            .where(LedgerEntry.account_id == account_id)
            .order_by(LedgerTransaction.created_at.desc(), LedgerEntry.id.desc())
            .limit(limit)
        )
        return [(tx, amount) for tx, amount in rows]
