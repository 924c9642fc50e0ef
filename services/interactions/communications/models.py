"""Tables: communications (messages we sent: e-mail, SMS, direct mail, calls, push) and their delivery
history. Both follow merges (`customer_id` + `origin_customer_id`); erasure overwrites the address
used, the subject and the bounce reasons (which can quote the address)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from services.interactions import privacy
from services.interactions.models import Base
from shared.db import UTCDateTime


class CommunicationRow(Base):
    """One message sent to a customer, with its current delivery status (the furthest reached, see
    `communications.domain`). Its row on the timeline is `interaction_id`."""

    __tablename__ = "communications"
    __table_args__ = (
        UniqueConstraint("source_system", "idempotency_key"),
        Index("ix_communications_customer_time", "customer_id", "sent_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(36))
    origin_customer_id: Mapped[str] = mapped_column(String(36), index=True)
    channel: Mapped[str] = mapped_column(String(30))
    campaign_id: Mapped[str | None] = mapped_column(String(100))
    template_id: Mapped[str | None] = mapped_column(String(100))
    subject: Mapped[str | None] = mapped_column(String(300))
    address: Mapped[str] = mapped_column(String(500))
    sent_at: Mapped[datetime] = mapped_column(UTCDateTime())
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime())
    source_system: Mapped[str] = mapped_column(String(100))
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(20))
    status_at: Mapped[datetime] = mapped_column(UTCDateTime())
    bounce_type: Mapped[str | None] = mapped_column(String(10))
    status_reason: Mapped[str | None] = mapped_column(String(500))
    interaction_id: Mapped[str] = mapped_column(String(36))

    deliveries: Mapped[list[DeliveryEventRow]] = relationship(
        back_populates="communication",
        lazy="raise",
        order_by=lambda: [DeliveryEventRow.occurred_at, DeliveryEventRow.recorded_at],
        cascade="all, delete-orphan",
    )


class DeliveryEventRow(Base):
    """One delivery event of a communication (queued, sent, delivered, bounced with its reason…), as
    reported; `idempotency_key` (the provider's event id) makes a redelivered webhook harmless."""

    __tablename__ = "communication_deliveries"
    __table_args__ = (UniqueConstraint("communication_id", "idempotency_key"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    communication_id: Mapped[str] = mapped_column(
        ForeignKey("communications.id", ondelete="CASCADE"), index=True
    )
    customer_id: Mapped[str] = mapped_column(String(36), index=True)
    origin_customer_id: Mapped[str] = mapped_column(String(36), index=True)
    status: Mapped[str] = mapped_column(String(20))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime())
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime())
    bounce_type: Mapped[str | None] = mapped_column(String(10))
    reason: Mapped[str | None] = mapped_column(String(500))
    idempotency_key: Mapped[str | None] = mapped_column(String(200))

    communication: Mapped[CommunicationRow] = relationship(back_populates="deliveries", lazy="raise")


privacy.personal(
    "communications",
    {"address": privacy.ERASED_TEXT, "subject": None, "status_reason": None},
)
privacy.personal("communication_deliveries", {"reason": None})
