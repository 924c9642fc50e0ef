"""Rewards' tables (migration 0005): the catalogue, redemptions and partners.

- `rewards`: what a member can burn points on, with everything shown before redemption: cost in
  points (optionally points + money), fees, terms, stock, per-member limits, availability window,
  blackout dates (local dates in the program's time zone) and eligibility by tier or segment.
  `stock` is the number of units left (null: unlimited) and `reserved` how many of them are held by
  reservations awaiting confirmation: `stock - reserved` can still be reserved. A reservation takes
  one with a guarded `UPDATE … WHERE stock - reserved > 0`; a confirmation consumes it (stock and
  reserved both go down by one); a cancellation or expiry gives it back (reserved down by one).
- `redemptions`: one member's claim on one reward, two-phase: `reserved` (points held in the
  member's reserved account until `expires_at`) → `confirmed` (points spent, voucher code issued)
  or `cancelled` / `expired` (points back into the lots they came from).
- `partners`: companies of the accrual network (members earn with them) and of the redemption
  network (members spend with them); each has its own `issued` and `redeemed` ledger accounts.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from services.loyalty.models import Base
from shared.db import UTCDateTime


class Partner(Base):
    """A partner company of a program: `accrual` (members earn with it), `redemption` (members spend
    with it) or `both`. Its liability accounts are `x:<id>:issued` and `x:<id>:redeemed`."""

    __tablename__ = "partners"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    program_id: Mapped[str] = mapped_column(ForeignKey("programs.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(20))  # accrual | redemption | both
    status: Mapped[str] = mapped_column(String(20), default="active")  # active | suspended | closed
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Reward(Base):
    """A catalogue entry. Amounts of money are integers in minor units of `currency`."""

    __tablename__ = "rewards"
    __table_args__ = (Index("ix_rewards_program_status", "program_id", "status"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    program_id: Mapped[str] = mapped_column(ForeignKey("programs.id"))
    kind: Mapped[str] = mapped_column(String(20))  # discount|voucher|free_product|upgrade|experience|partner
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    cost_points: Mapped[int] = mapped_column(BigInteger)
    cash_minor: Mapped[int] = mapped_column(BigInteger, default=0)  # money on top of the points
    currency: Mapped[str | None] = mapped_column(String(3))
    fees_minor: Mapped[int] = mapped_column(BigInteger, default=0)  # e.g. taxes, delivery: shown up front
    terms: Mapped[str | None] = mapped_column(Text)
    stock: Mapped[int | None] = mapped_column(BigInteger)  # units left; null = unlimited
    reserved: Mapped[int] = mapped_column(BigInteger, default=0)  # units held by open reservations
    per_member_limit: Mapped[int | None] = mapped_column(Integer)
    limit_period: Mapped[str] = mapped_column(String(20), default="lifetime")  # lifetime|day|week|month|year
    available_from: Mapped[datetime | None] = mapped_column(UTCDateTime())
    available_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    blackout_dates: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)  # [{from, until}]
    eligible_tiers: Mapped[list[str]] = mapped_column(JSON, default=list)  # empty: every tier (and none)
    eligible_segments: Mapped[list[str]] = mapped_column(JSON, default=list)  # empty: everyone
    partner_id: Mapped[str | None] = mapped_column(ForeignKey("partners.id"), index=True)
    status: Mapped[str] = mapped_column(String(20), default="active")  # draft | active | retired
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Redemption(Base):
    """A member's claim on a reward: the price agreed at reservation (points, money, fees) is kept."""

    __tablename__ = "redemptions"
    __table_args__ = (
        Index("ix_redemptions_member_reward", "member_id", "reward_id", "status"),
        Index("ix_redemptions_status_expires", "status", "expires_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    reward_id: Mapped[str] = mapped_column(ForeignKey("rewards.id"))
    member_id: Mapped[str] = mapped_column(String(36))
    program_id: Mapped[str] = mapped_column(String(40))
    partner_id: Mapped[str | None] = mapped_column(String(40))
    points: Mapped[int] = mapped_column(BigInteger)
    cash_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    fees_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    currency: Mapped[str | None] = mapped_column(String(3))
    payment_reference: Mapped[str | None] = mapped_column(String(120))
    status: Mapped[str] = mapped_column(String(20))  # reserved | confirmed | cancelled | expired
    reservation_transaction_id: Mapped[str] = mapped_column(String(36))
    confirm_transaction_id: Mapped[str | None] = mapped_column(String(36))
    cancel_transaction_id: Mapped[str | None] = mapped_column(String(36))
    voucher_code: Mapped[str | None] = mapped_column(String(20), unique=True)
    reserved_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    reason: Mapped[str | None] = mapped_column(Text)
    version: Mapped[int] = mapped_column(Integer, default=1)
