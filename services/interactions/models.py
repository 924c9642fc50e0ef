"""Interactions' tables: purchases with their lines and refunds, known customers, messaging tables."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from shared.db import ServiceBase, UTCDateTime, new_metadata
from shared.messaging.tables import messaging_tables

metadata = new_metadata()
MESSAGING = messaging_tables(metadata)


class Base(ServiceBase):
    __abstract__ = True
    metadata = metadata


class KnownCustomer(Base):
    """Customers identity told us about (from its events, or a lookup when an event had not arrived yet)."""

    __tablename__ = "known_customers"

    customer_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    learned_at: Mapped[datetime] = mapped_column(UTCDateTime())
    merged_into: Mapped[str | None] = mapped_column(String(36))
    erased_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class InteractionRow(Base):
    """One contact with a customer: the timeline. Purchases, refunds, complaints, survey answers and
    messages sent have a row here too (`subject_type`/`subject_id` point at their details), so the
    timeline is one indexed range scan, newest first.

    `customer_id` is the customer the contact belongs to today (it follows merges); `origin_customer_id`
    the one it was recorded for, so an unmerge can give each customer its own contacts back."""

    __tablename__ = "interactions"
    __table_args__ = (
        UniqueConstraint("source_system", "idempotency_key", name="uq_interactions_idempotency"),
        Index("ix_interactions_timeline", "customer_id", "occurred_at", "id"),
        Index("ix_interactions_subject", "subject_type", "subject_id"),
        Index("ix_interactions_occurred_at", "occurred_at"),  # reports over everyone, by period
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(36))
    origin_customer_id: Mapped[str] = mapped_column(String(36), index=True)
    kind: Mapped[str] = mapped_column(String(30))
    channel: Mapped[str] = mapped_column(String(30))
    direction: Mapped[str] = mapped_column(String(10))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime())
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime())
    source_system: Mapped[str] = mapped_column(String(100))
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    agent_id: Mapped[str | None] = mapped_column(String(100))
    summary: Mapped[str | None] = mapped_column(String(300))
    text: Mapped[str | None] = mapped_column(Text)
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    attributes: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    subject_type: Mapped[str | None] = mapped_column(String(30))
    subject_id: Mapped[str | None] = mapped_column(String(36))
    erased: Mapped[bool] = mapped_column(Boolean, default=False)


class Purchase(Base):
    """An order. `payment_status` follows `services.interactions.refunds.PaymentStatus`;
    `refunded_total_minor` is everything refunded so far (kept with the refunds, under the row's lock)."""

    __tablename__ = "purchases"
    __table_args__ = (
        UniqueConstraint("source_system", "external_id"),
        Index("ix_purchases_customer_time", "customer_id", "occurred_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(36))
    origin_customer_id: Mapped[str | None] = mapped_column(String(36), index=True)
    external_id: Mapped[str | None] = mapped_column(String(100))
    source_system: Mapped[str] = mapped_column(String(100))
    channel: Mapped[str] = mapped_column(String(30))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime())
    currency: Mapped[str] = mapped_column(String(3))
    total_minor: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    payment_status: Mapped[str] = mapped_column(String(20), default="paid", server_default="paid")
    payment_status_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    refunded_total_minor: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")

    lines: Mapped[list[PurchaseLineRow]] = relationship(
        back_populates="purchase",
        lazy="raise",
        order_by="PurchaseLineRow.line_no",
        cascade="all, delete-orphan",
    )
    refunds: Mapped[list[RefundRow]] = relationship(
        back_populates="purchase",
        lazy="raise",
        order_by=lambda: [RefundRow.occurred_at, RefundRow.recorded_at],
        cascade="all, delete-orphan",
    )


class PurchaseLineRow(Base):
    __tablename__ = "purchase_lines"

    purchase_id: Mapped[str] = mapped_column(ForeignKey("purchases.id", ondelete="CASCADE"), primary_key=True)
    line_no: Mapped[int] = mapped_column(Integer, primary_key=True)
    sku: Mapped[str] = mapped_column(String(100))
    category: Mapped[str | None] = mapped_column(String(100))
    quantity: Mapped[int] = mapped_column(Integer)
    unit_price_minor: Mapped[int] = mapped_column(BigInteger)
    returned_quantity: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    purchase: Mapped[Purchase] = relationship(back_populates="lines", lazy="raise")


class RefundRow(Base):
    """A return of goods and/or money given back on a purchase, in the purchase's currency. It
    belongs to the purchase's customer (and follows merges like it)."""

    __tablename__ = "purchase_refunds"
    __table_args__ = (
        UniqueConstraint("source_system", "idempotency_key"),
        Index("ix_purchase_refunds_customer_time", "customer_id", "occurred_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    purchase_id: Mapped[str] = mapped_column(ForeignKey("purchases.id", ondelete="CASCADE"), index=True)
    customer_id: Mapped[str] = mapped_column(String(36))
    origin_customer_id: Mapped[str] = mapped_column(String(36), index=True)
    source_system: Mapped[str] = mapped_column(String(100))
    idempotency_key: Mapped[str] = mapped_column(String(200))
    channel: Mapped[str] = mapped_column(String(30))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime())
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime())
    currency: Mapped[str] = mapped_column(String(3))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    reason: Mapped[str] = mapped_column(String(200))

    purchase: Mapped[Purchase] = relationship(back_populates="refunds", lazy="raise")
    lines: Mapped[list[RefundLineRow]] = relationship(
        back_populates="refund",
        lazy="raise",
        order_by="RefundLineRow.line_no",
        cascade="all, delete-orphan",
    )


class RefundLineRow(Base):
    """Goods that came back with a refund: so many units of one purchase line."""

    __tablename__ = "purchase_refund_lines"

    refund_id: Mapped[str] = mapped_column(
        ForeignKey("purchase_refunds.id", ondelete="CASCADE"), primary_key=True
    )
    line_no: Mapped[int] = mapped_column(Integer, primary_key=True)
    quantity: Mapped[int] = mapped_column(Integer)

    refund: Mapped[RefundRow] = relationship(back_populates="lines", lazy="raise")
