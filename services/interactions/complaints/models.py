"""Tables: complaints, their history (every status change, assignment, message and escalation, in
order) and the service-level policies per channel and priority.

`complaints` is read by SQL reports too: its column names are a contract. Both `complaints` and
`complaint_events` carry `customer_id` (the customer today) and `origin_customer_id` (whom it was
opened for), so they follow identity's merges and unmerges (see `privacy`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from services.interactions import privacy
from services.interactions.models import Base
from shared.db import UTCDateTime


class Complaint(Base):
    """A complaint or claim and where it stands against its service-level targets.

    `next_due_at` is the deadline it races now (first response while unanswered, then resolution;
    null once resolved or closed): the work queue is ordered by it, overdue first. The breach flags
    are set once per target by the SLA watch, which claims them with a conditional UPDATE.
    `last_seq` numbers the rows of `complaint_events`; `version` is the ETag (optimistic concurrency)."""

    __tablename__ = "complaints"
    __table_args__ = (
        UniqueConstraint("source_system", "idempotency_key", name="uq_complaints_idempotency"),
        Index("ix_complaints_queue", "next_due_at", "id"),
        Index("ix_complaints_customer", "customer_id", "opened_at"),
        Index("ix_complaints_owner", "owner_id", "next_due_at"),
        Index("ix_complaints_opened_at", "opened_at"),
        Index("ix_complaints_first_response_watch", "first_response_breached", "first_response_due"),
        Index("ix_complaints_resolution_watch", "resolution_breached", "resolution_due"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(36))
    origin_customer_id: Mapped[str] = mapped_column(String(36), index=True)
    channel: Mapped[str] = mapped_column(String(30))
    priority: Mapped[str] = mapped_column(String(10))
    category: Mapped[str] = mapped_column(String(50))
    subject: Mapped[str] = mapped_column(String(300))
    status: Mapped[str] = mapped_column(String(20))
    owner_id: Mapped[str | None] = mapped_column(String(100))
    owner_authority_minor: Mapped[int | None] = mapped_column(BigInteger)
    owner_authority_currency: Mapped[str | None] = mapped_column(String(3))
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime())
    first_response_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    first_response_due: Mapped[datetime] = mapped_column(UTCDateTime())
    resolution_due: Mapped[datetime] = mapped_column(UTCDateTime())
    next_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    first_response_breached: Mapped[bool] = mapped_column(Boolean, default=False)
    resolution_breached: Mapped[bool] = mapped_column(Boolean, default=False)
    escalation_level: Mapped[int] = mapped_column(Integer, default=0)
    reopen_count: Mapped[int] = mapped_column(Integer, default=0)
    last_seq: Mapped[int] = mapped_column(Integer, default=0)
    version: Mapped[int] = mapped_column(Integer)
    source_system: Mapped[str] = mapped_column(String(100))
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    opened_by: Mapped[str | None] = mapped_column(String(100))
    interaction_id: Mapped[str] = mapped_column(String(36))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())

    __mapper_args__ = {"version_id_col": version}


class ComplaintEventRow(Base):
    """One step of a complaint's history: who, when, what. `seq` orders them within the complaint.
    `text` (messages, notes) is personal data, erased with the customer."""

    __tablename__ = "complaint_events"
    __table_args__ = (
        UniqueConstraint("complaint_id", "seq", name="uq_complaint_events_seq"),
        Index("ix_complaint_events_customer_id", "customer_id"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    complaint_id: Mapped[str] = mapped_column(ForeignKey("complaints.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)
    customer_id: Mapped[str] = mapped_column(String(36))
    origin_customer_id: Mapped[str] = mapped_column(String(36), index=True)
    kind: Mapped[str] = mapped_column(String(20))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime())
    actor_id: Mapped[str | None] = mapped_column(String(100))
    from_status: Mapped[str | None] = mapped_column(String(20))
    to_status: Mapped[str | None] = mapped_column(String(20))
    direction: Mapped[str | None] = mapped_column(String(10))
    channel: Mapped[str | None] = mapped_column(String(30))
    text: Mapped[str | None] = mapped_column(Text)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class SlaPolicyRow(Base):
    """A service-level policy set by an operator for one channel and priority (absent: the default)."""

    __tablename__ = "complaint_sla_policies"

    channel: Mapped[str] = mapped_column(String(30), primary_key=True)
    priority: Mapped[str] = mapped_column(String(10), primary_key=True)
    first_response_minutes: Mapped[int] = mapped_column(Integer)
    resolution_minutes: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_by: Mapped[str | None] = mapped_column(String(100))


privacy.personal("complaints", {"subject": privacy.ERASED_TEXT})
privacy.personal("complaint_events", {"text": None})
