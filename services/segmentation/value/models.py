"""Tables of customer value, risk and stage (in segmentation's metadata, migration 0004).

- `rfm_cutpoints`: every computation of population-level cut points, kept as history; the latest row
  per `dimension` is current. Dimensions: `recency` / `frequency` / `monetary` (quintile cut points,
  4 values, ascending) and `tier` (the CLV floors of the top, high and medium tiers).
- `clv_models`: every BG/NBD + Gamma-Gamma fit (parameters JSON); the latest is applied per customer.
- `customer_value`: one row per customer, rewritten by the real-time path and by the scheduled pass.
- `ladder_history`: every loyalty-ladder stage change, appended (also published as an event).
- `defections`: reasons recorded for lapsed customers, from DOMAIN.md's taxonomy.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from services.segmentation.models import Base
from shared.db import UTCDateTime


class RfmCutpoints(Base):
    __tablename__ = "rfm_cutpoints"

    dimension: Mapped[str] = mapped_column(String(20), primary_key=True)
    computed_at: Mapped[datetime] = mapped_column(UTCDateTime(), primary_key=True)
    cut_points: Mapped[list[float]] = mapped_column(JSON)
    population: Mapped[int] = mapped_column(Integer, default=0)


class ClvModel(Base):
    __tablename__ = "clv_models"

    fitted_at: Mapped[datetime] = mapped_column(UTCDateTime(), primary_key=True)
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    customers: Mapped[int] = mapped_column(Integer, default=0)


class CustomerValue(Base):
    __tablename__ = "customer_value"
    __table_args__ = (
        Index("ix_customer_value_tier_risk", "value_tier", "risk_level"),
        {"postgresql_with": {"fillfactor": 50}},  # room for in-place updates (migration 0009)
    )

    customer_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    rfm_r: Mapped[int | None] = mapped_column(Integer)
    rfm_f: Mapped[int | None] = mapped_column(Integer)
    rfm_m: Mapped[int | None] = mapped_column(Integer)
    rfm_segment: Mapped[str | None] = mapped_column(String(20))
    currency: Mapped[str | None] = mapped_column(String(3))
    clv_historic_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    clv_predicted_minor: Mapped[int | None] = mapped_column(BigInteger)
    value_tier: Mapped[str] = mapped_column(String(10), default="rest")
    risk_score: Mapped[int] = mapped_column(Integer, default=0)
    risk_level: Mapped[str] = mapped_column(String(10), default="low")
    risk_reasons: Mapped[dict[str, int]] = mapped_column(JSON, default=dict)
    active: Mapped[bool] = mapped_column(Boolean, default=False)
    lapsed: Mapped[bool] = mapped_column(Boolean, default=False)
    defection_reason: Mapped[str | None] = mapped_column(String(40))
    ladder_stage: Mapped[str] = mapped_column(String(12), default="prospect")
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class LadderHistory(Base):
    __tablename__ = "ladder_history"
    __table_args__ = (Index("ix_ladder_history_customer_at", "customer_id", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    customer_id: Mapped[str] = mapped_column(String(36))
    from_stage: Mapped[str | None] = mapped_column(String(12))
    to_stage: Mapped[str] = mapped_column(String(12))
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    reason: Mapped[str] = mapped_column(String(200))


class Defection(Base):
    __tablename__ = "defections"
    __table_args__ = (Index("ix_defections_customer", "customer_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    customer_id: Mapped[str] = mapped_column(String(36))
    reason: Mapped[str] = mapped_column(String(40))
    note: Mapped[str | None] = mapped_column(String(500))
    noted_by: Mapped[str] = mapped_column(String(100))
    at: Mapped[datetime] = mapped_column(UTCDateTime())
