"""Segmentation's HTTP schemas."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class SpendOut(BaseModel):
    currency: str = Field(examples=["EUR"])
    purchase_count: int = Field(examples=[3])
    total_minor: int = Field(description="Total spend in minor units", examples=[25990])


class FeaturesOut(BaseModel):
    customer_id: str
    registered_at: datetime | None
    first_purchase_at: datetime | None
    last_purchase_at: datetime | None
    purchase_count: int
    spend: list[SpendOut]
