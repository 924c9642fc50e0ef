"""Loyalty's tables: accounts, ledger transactions and their immutable entries, plus messaging tables.

Account balances are derived from entries; the `balance` column is a cache updated in the same
transaction as the entries, and `crm loyalty check` (later) proves they agree.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from shared.db import ServiceBase, UTCDateTime, new_metadata
from shared.messaging.tables import BigIntPK, messaging_tables

metadata = new_metadata()
MESSAGING = messaging_tables(metadata)


class Base(ServiceBase):
    __abstract__ = True
    metadata = metadata


class Account(Base):
    __tablename__ = "accounts"
    __table_args__ = (UniqueConstraint("owner_kind", "owner_id", "kind"),)

    id: Mapped[str] = mapped_column(String(80), primary_key=True)
    owner_kind: Mapped[str] = mapped_column(String(20))  # member | program
    owner_id: Mapped[str] = mapped_column(String(80))
    kind: Mapped[str] = mapped_column(String(30))  # points | issued
    balance: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class LedgerTransaction(Base):
    __tablename__ = "ledger_transactions"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    kind: Mapped[str] = mapped_column(String(30))
    reference: Mapped[str] = mapped_column(String(200), unique=True)  # what it is for; once only
    customer_id: Mapped[str | None] = mapped_column(String(36), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class LedgerEntry(Base):
    __tablename__ = "ledger_entries"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    transaction_id: Mapped[str] = mapped_column(ForeignKey("ledger_transactions.id"), index=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    amount: Mapped[int] = mapped_column(BigInteger)
    line_no: Mapped[int] = mapped_column(Integer)
