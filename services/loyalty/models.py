"""Loyalty's tables: programs and members, the double-entry ledger with its lots, idempotency keys.

The ledger is append-only. `ledger_transactions` and `ledger_entries` are never updated or deleted:
a correction is a new transaction that reverses an earlier one (`reverses_id`). Every transaction's
entries sum to zero, so the sum over all accounts is always zero.

Account balances are derived from entries. Member accounts keep a cached `balance`, moved in the same
statement that checks it (`balance + delta >= floor`), which makes the member's `available` account
row the lock that serialises everything touching that member's points. Program and partner accounts
(issued, redeemed, expired, ...) would be hot rows touched by every posting, so they keep no cached
balance (`cached` false): their balance is the sum of their entries, computed when asked.
`crm loyalty check` proves every cached balance equals the sum of its entries and every transaction
balances.

Lots give earned points their dates: each earn creates a lot (pending until `available_at`, expiring at
`expires_at`); spending consumes the oldest-expiring lots first (FIFO) and `lot_movements` records
which transaction took or gave back how much of which lot. Invariant, per member: the remaining
points of available lots equal the available balance when it is positive (zero otherwise).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from shared.db import ServiceBase, UTCDateTime, new_metadata
from shared.idempotency import idempotency_table
from shared.messaging.tables import BigIntPK, messaging_tables

metadata = new_metadata()
MESSAGING = messaging_tables(metadata)
IDEMPOTENCY = idempotency_table(metadata)


class Base(ServiceBase):
    __abstract__ = True
    metadata = metadata


class Program(Base):
    """A loyalty program: its currency of points, earning base, pending window, expiry and
    negative-balance policies, and tiers (`tiers`: ordered definitions, see `tiers`)."""

    __tablename__ = "programs"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(120))
    status: Mapped[str] = mapped_column(String(20), default="active")  # active | closed
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    currency: Mapped[str | None] = mapped_column(String(3))  # None: purchases in any currency earn
    points_per_unit: Mapped[int] = mapped_column(Integer, default=1)
    pending_days: Mapped[int] = mapped_column(Integer, default=0)
    expiry_policy: Mapped[str] = mapped_column(String(20), default="never")
    expiry_period: Mapped[int | None] = mapped_column(Integer)  # days, months or years by policy
    negative_policy: Mapped[str] = mapped_column(String(20), default="never")  # never | within_limit
    negative_limit: Mapped[int] = mapped_column(BigInteger, default=0)
    expiring_notice_days: Mapped[int] = mapped_column(Integer, default=30)
    tiers: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    settings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Member(Base):
    """A customer's membership of one program: card, status, tier, referral code, household."""

    __tablename__ = "members"
    __table_args__ = (UniqueConstraint("program_id", "customer_id"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    program_id: Mapped[str] = mapped_column(ForeignKey("programs.id"))
    customer_id: Mapped[str] = mapped_column(String(36), index=True)
    card_number: Mapped[str] = mapped_column(String(24), unique=True)
    card_status: Mapped[str] = mapped_column(String(20), default="active")  # active|blocked|lost|replaced
    status: Mapped[str] = mapped_column(String(20), default="active")  # active | suspended | closed
    tier: Mapped[str | None] = mapped_column(String(40))
    tier_since: Mapped[datetime | None] = mapped_column(UTCDateTime())
    referral_code: Mapped[str] = mapped_column(String(16), unique=True)
    referred_by: Mapped[str | None] = mapped_column(String(36))
    household_id: Mapped[str | None] = mapped_column(String(36), index=True)
    birth_date: Mapped[date | None] = mapped_column(Date)  # for the birthday bonus (migration 0004)
    enrolled_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_activity_at: Mapped[datetime] = mapped_column(UTCDateTime())
    version: Mapped[int] = mapped_column(Integer, default=1)


class Account(Base):
    """One side of the books. Member accounts: available, pending, reserved, qualifying. Program
    accounts: issued, redeemed, expired, written_off, qualifying_issued. Partner accounts: issued,
    redeemed (a partner's own liability)."""

    __tablename__ = "accounts"
    __table_args__ = (UniqueConstraint("owner_kind", "owner_id", "kind"),)

    id: Mapped[str] = mapped_column(String(100), primary_key=True)
    program_id: Mapped[str | None] = mapped_column(String(40))
    owner_kind: Mapped[str] = mapped_column(String(20))  # member | program | partner
    owner_id: Mapped[str] = mapped_column(String(80))
    kind: Mapped[str] = mapped_column(String(30))
    balance: Mapped[int] = mapped_column(BigInteger, default=0)
    cached: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class LedgerTransaction(Base):
    """One balanced movement of points. `reference` makes it happen once (e.g. `purchase:<id>:earn`)."""

    __tablename__ = "ledger_transactions"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    program_id: Mapped[str | None] = mapped_column(String(40))
    kind: Mapped[str] = mapped_column(String(30))
    reference: Mapped[str] = mapped_column(String(200), unique=True)
    customer_id: Mapped[str | None] = mapped_column(String(36), index=True)
    # Looked up by member through ix_ledger_transactions_member_created (rules/models.py).
    member_id: Mapped[str | None] = mapped_column(String(36))
    reason: Mapped[str | None] = mapped_column(Text)
    actor: Mapped[str | None] = mapped_column(String(120))
    reverses_id: Mapped[str | None] = mapped_column(String(36), unique=True)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)


class LedgerEntry(Base):
    __tablename__ = "ledger_entries"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    transaction_id: Mapped[str] = mapped_column(ForeignKey("ledger_transactions.id"), index=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    amount: Mapped[int] = mapped_column(BigInteger)
    line_no: Mapped[int] = mapped_column(Integer)


class Lot(Base):
    """Points earned together: how many, how many remain, when they become spendable and expire."""

    __tablename__ = "lots"
    __table_args__ = (Index("ix_lots_member_status_expires", "member_id", "status", "expires_at"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    member_id: Mapped[str] = mapped_column(String(36))
    program_id: Mapped[str] = mapped_column(String(40))
    transaction_id: Mapped[str] = mapped_column(String(36), index=True)
    source: Mapped[str] = mapped_column(String(200), index=True)  # what earned it, e.g. purchase:<id>
    points: Mapped[int] = mapped_column(BigInteger)
    remaining: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(20))  # pending | available | expired | cancelled
    earned_at: Mapped[datetime] = mapped_column(UTCDateTime())
    available_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), index=True)


class LotMovement(Base):
    """Which transaction took (negative) or gave back (positive) how many points of which lot."""

    __tablename__ = "lot_movements"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    lot_id: Mapped[int] = mapped_column(BigInteger, index=True)
    transaction_id: Mapped[str] = mapped_column(String(36), index=True)
    amount: Mapped[int] = mapped_column(BigInteger)
