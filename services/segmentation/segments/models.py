"""Segment tables: definitions, current members, and the history of every entry and exit."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from services.segmentation.models import Base
from shared.db import UTCDateTime
from shared.messaging.tables import BigIntPK


class Segment(Base):
    """A named group of customers: `rule` (a definition kept current) or `static` (an uploaded list)."""

    __tablename__ = "segments"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    description: Mapped[str | None] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(String(10))  # rule | static
    definition: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    time_relative: Mapped[bool] = mapped_column(Boolean, default=False)
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    evaluated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class SegmentMember(Base):
    __tablename__ = "segment_members"
    __table_args__ = (Index("ix_segment_members_customer", "customer_id"),)

    segment_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("segments.id", ondelete="CASCADE"), primary_key=True
    )
    customer_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    since: Mapped[datetime] = mapped_column(UTCDateTime())


class SegmentHistory(Base):
    """Every entry and exit (kept after a segment is deleted: no foreign key)."""

    __tablename__ = "segment_history"
    __table_args__ = (
        Index("ix_segment_history_customer_at", "customer_id", "at"),
        Index("ix_segment_history_segment_at", "segment_id", "at"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    segment_id: Mapped[str] = mapped_column(String(36))
    customer_id: Mapped[str] = mapped_column(String(36))
    change: Mapped[str] = mapped_column(String(10))  # entered | exited
    cause: Mapped[str] = mapped_column(
        String(10)
    )  # event | backfill | schedule | upload | erasure | deletion
    at: Mapped[datetime] = mapped_column(UTCDateTime())
