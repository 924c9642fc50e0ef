"""Segmentation's tables: per-customer features kept current from events, the purchase facts they are
computed from, and the messaging tables."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from shared.db import ServiceBase, UTCDateTime, new_metadata
from shared.messaging.tables import messaging_tables

metadata = new_metadata()
MESSAGING = messaging_tables(metadata)


class Base(ServiceBase):
    __abstract__ = True
    metadata = metadata


class CustomerFeatures(Base):
    __tablename__ = "customer_features"

    customer_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    registered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    first_purchase_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_purchase_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    purchase_count: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class CustomerSpend(Base):
    """Total spend per customer and currency (minor units): amounts in different currencies never mix."""

    __tablename__ = "customer_spend"

    customer_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    currency: Mapped[str] = mapped_column(String(3), primary_key=True)
    purchase_count: Mapped[int] = mapped_column(Integer, default=0)
    total_minor: Mapped[int] = mapped_column(BigInteger, default=0)


class PurchaseFact(Base):
    """Each purchase once: the facts features are derived (and recomputed) from."""

    __tablename__ = "purchase_facts"
    __table_args__ = (Index("ix_purchase_facts_customer_time", "customer_id", "occurred_at"),)

    purchase_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(36))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime())
    currency: Mapped[str] = mapped_column(String(3))
    total_minor: Mapped[int] = mapped_column(BigInteger)
    channel: Mapped[str] = mapped_column(String(30))
