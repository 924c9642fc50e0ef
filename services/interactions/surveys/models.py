"""Tables: surveys — one row per satisfaction survey answered (its contact is on the timeline too)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from services.interactions import privacy
from services.interactions.models import Base
from shared.db import UTCDateTime


class SurveyRow(Base):
    """A satisfaction survey answer. Scores are kept as columns (csat, nps, overall and its maximum)
    so that reports aggregate them in SQL; the attribute ratings and expectations as JSON.

    `customer_id` follows merges, `origin_customer_id` is whom it was recorded for (see privacy).
    `interaction_id` is the survey's own row on the timeline; `about_interaction_id` the contact the
    survey asked about, if any."""

    __tablename__ = "surveys"
    __table_args__ = (
        UniqueConstraint("source_system", "idempotency_key", name="uq_surveys_idempotency"),
        Index("ix_surveys_customer_answered", "customer_id", "answered_at", "id"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(36))
    origin_customer_id: Mapped[str] = mapped_column(String(36), index=True)
    interaction_id: Mapped[str] = mapped_column(String(36))
    about_interaction_id: Mapped[str | None] = mapped_column(String(36), index=True)
    channel: Mapped[str] = mapped_column(String(30))
    answered_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime())
    csat: Mapped[int | None] = mapped_column(Integer)
    nps: Mapped[int | None] = mapped_column(Integer)
    nps_category: Mapped[str | None] = mapped_column(String(10))
    ratings: Mapped[dict[str, int]] = mapped_column(JSON, default=dict)
    expectations: Mapped[dict[str, int]] = mapped_column(JSON, default=dict)
    overall: Mapped[int | None] = mapped_column(Integer)
    overall_max: Mapped[int | None] = mapped_column(Integer)
    comment: Mapped[str | None] = mapped_column(Text)
    source_system: Mapped[str] = mapped_column(String(100))
    idempotency_key: Mapped[str | None] = mapped_column(String(200))


# The free-text comment is personal data; the scores are facts that aggregate figures keep.
privacy.personal("surveys", {"comment": None})
