"""Consent tables on identity's metadata.

- `consents`: the latest choice per customer id × channel × purpose (one row each, updated in place).
- `consent_history`: every choice ever recorded, append-only; the proof of what the customer said.
- `contact_preferences`: per customer id, do-not-contact, preferred channel and language, quiet hours.

Channels, purposes and sources are stored as their string values (see `domain.py`).
"""

from __future__ import annotations

from datetime import datetime, time

from sqlalchemy import Boolean, Index, String, Text, Time
from sqlalchemy.orm import Mapped, mapped_column

from services.identity.models import Base
from shared.db import UTCDateTime
from shared.messaging.tables import BigIntPK


class ConsentRow(Base):
    __tablename__ = "consents"

    customer_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    channel: Mapped[str] = mapped_column(String(30), primary_key=True)
    purpose: Mapped[str] = mapped_column(String(40), primary_key=True)
    status: Mapped[str] = mapped_column(String(20))
    source: Mapped[str] = mapped_column(String(30))
    evidence: Mapped[str | None] = mapped_column(Text)
    actor: Mapped[str | None] = mapped_column(String(200))
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ConsentHistoryRow(Base):
    __tablename__ = "consent_history"
    __table_args__ = (Index("ix_consent_history_customer_time", "customer_id", "changed_at"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    customer_id: Mapped[str] = mapped_column(String(36))
    channel: Mapped[str] = mapped_column(String(30))
    purpose: Mapped[str] = mapped_column(String(40))
    status: Mapped[str] = mapped_column(String(20))
    previous_status: Mapped[str | None] = mapped_column(String(20))
    source: Mapped[str] = mapped_column(String(30))
    evidence: Mapped[str | None] = mapped_column(Text)
    actor: Mapped[str | None] = mapped_column(String(200))
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ContactPreferencesRow(Base):
    __tablename__ = "contact_preferences"

    customer_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    do_not_contact: Mapped[bool] = mapped_column(Boolean, default=False)
    preferred_channel: Mapped[str | None] = mapped_column(String(30))
    preferred_language: Mapped[str | None] = mapped_column(String(35))
    quiet_hours_start: Mapped[time | None] = mapped_column(Time)
    quiet_hours_end: Mapped[time | None] = mapped_column(Time)
    quiet_hours_time_zone: Mapped[str | None] = mapped_column(String(64))
    actor: Mapped[str | None] = mapped_column(String(200))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
