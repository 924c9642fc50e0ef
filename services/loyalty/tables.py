"""Loyalty's tables for households, expiry notices and the customers loyalty knows of (migration 0006).

- `households`: members of one program who pool their points (a family, a flat share). A member
  belongs to at most one household (`Member.household_id`); the owner manages it.
- `expiry_notices`: which "points expiring soon" reminders were sent, once per member and expiry
  instant, so the scheduled pass never repeats one.
- `known_customers`: every customer identity announced (`customer_registered`), with when they were
  erased or merged away; the denominator of program penetration.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from services.loyalty.models import Base
from shared.db import UTCDateTime


class Household(Base):
    """Members of one program who pool their points; `max_members` includes the owner."""

    __tablename__ = "households"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    program_id: Mapped[str] = mapped_column(ForeignKey("programs.id"), index=True)
    name: Mapped[str] = mapped_column(String(120))
    owner_member_id: Mapped[str] = mapped_column(String(36))
    pooling_enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    max_members: Mapped[int] = mapped_column(Integer, default=6)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    version: Mapped[int] = mapped_column(Integer, default=1)


class ExpiryNotice(Base):
    """A `points_expiring_soon` reminder sent: one per member and expiry instant."""

    __tablename__ = "expiry_notices"

    member_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), primary_key=True)
    program_id: Mapped[str] = mapped_column(String(40))
    points: Mapped[int] = mapped_column(BigInteger)
    notified_at: Mapped[datetime] = mapped_column(UTCDateTime())


class KnownCustomer(Base):
    """A customer identity loyalty has heard of; erased or merged ones no longer count."""

    __tablename__ = "known_customers"

    customer_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    registered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    erased_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    merged_into: Mapped[str | None] = mapped_column(String(36))
