"""Tables of earning rules, tiers and referrals (migration 0004).

- `earning_rules`: a program's rules, each of one `kind` (multiplier, bonus_points, event_bonus, cap)
  with its `definition` (JSON, validated by `engine.validate_definition`), a `priority` (lower first),
  a validity window and an `active` flag (deleting a rule deactivates it: the ledger keeps naming it).
- `referrals`: one row per referred member whose referral completed (their first purchase), so the
  referral is rewarded once whatever the number of purchases or redeliveries.
- `tier_reviews`: per member and tier period (its end), when the "will downgrade" warning was sent and
  when the period was reviewed, so each happens once.
- An index on `ledger_transactions (member_id, created_at)`: caps and tier measures sum a member's
  movements over a period.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from services.loyalty.models import Base, LedgerTransaction
from shared.db import UTCDateTime

# Declared here (not in models.py) so the ledger module stays as it is; it belongs to the same table.
LEDGER_MEMBER_CREATED = Index(
    "ix_ledger_transactions_member_created", LedgerTransaction.member_id, LedgerTransaction.created_at
)


class EarningRule(Base):
    """One earning rule of a program. `version` grows with every change."""

    __tablename__ = "earning_rules"
    __table_args__ = (Index("ix_earning_rules_program_active", "program_id", "active"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    program_id: Mapped[str] = mapped_column(ForeignKey("programs.id"))
    name: Mapped[str] = mapped_column(String(120))
    kind: Mapped[str] = mapped_column(String(20))  # multiplier | bonus_points | event_bonus | cap
    priority: Mapped[int] = mapped_column(Integer, default=100)
    definition: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    valid_from: Mapped[datetime | None] = mapped_column(UTCDateTime())
    valid_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Referral(Base):
    """A completed referral: the referred member qualified and both sides were considered for the
    bonus (`referrer_points` 0 when the referrer's cap was reached or they are not active)."""

    __tablename__ = "referrals"

    referred_member_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    referrer_member_id: Mapped[str] = mapped_column(String(36), index=True)
    program_id: Mapped[str] = mapped_column(String(40))
    purchase_id: Mapped[str | None] = mapped_column(String(64))
    referrer_points: Mapped[int] = mapped_column(BigInteger, default=0)
    referee_points: Mapped[int] = mapped_column(BigInteger, default=0)
    completed_at: Mapped[datetime] = mapped_column(UTCDateTime())


class TierReview(Base):
    """A member's tier period (ending at `period_end`): the warning sent before its review and the
    review itself (`outcome`: kept | downgraded)."""

    __tablename__ = "tier_reviews"

    member_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    period_end: Mapped[datetime] = mapped_column(UTCDateTime(), primary_key=True)
    program_id: Mapped[str] = mapped_column(String(40))
    tier: Mapped[str | None] = mapped_column(String(40))
    warned_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    reviewed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    outcome: Mapped[str | None] = mapped_column(String(20))
