"""Segmentation's HTTP schemas."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class SpendOut(BaseModel):
    currency: str = Field(examples=["EUR"])
    purchase_count: int = Field(examples=[3])
    total_minor: int = Field(description="Total spend in minor units", examples=[25990])


class FeaturesOut(BaseModel):
    """What segmentation knows of a customer, kept current from events. Amounts in minor units of the
    customer's main `currency`; `spend` lists every currency separately."""

    customer_id: str
    registered_at: datetime | None
    erased: bool = False
    first_purchase_at: datetime | None
    last_purchase_at: datetime | None
    purchase_count: int
    refund_count: int = 0
    currency: str | None = Field(default=None, description="The currency the customer spent most in")
    total_spend_minor: int = 0
    refunded_minor: int = 0
    net_spend_minor: int = 0
    average_order_minor: int = 0
    mean_interpurchase_days: float | None = Field(default=None, description="Typical days between purchases")
    channels: list[str] = Field(default_factory=list, examples=[["store", "web"]])
    channel_count: int = 0
    multichannel: bool = False
    contact_count: int = 0
    last_contact_at: datetime | None = None
    complaint_count: int = 0
    open_complaints: int = 0
    unanswered_complaints: int = 0
    sla_breaches: int = 0
    last_csat: int | None = None
    last_nps: int | None = None
    nps_category: str | None = None
    last_survey_at: datetime | None = None
    loyalty_member: bool = Field(default=False, description="A member of a loyalty program")
    loyalty_programs: list[str] = Field(default_factory=list, examples=[["default"]])
    loyalty_tier: str | None = Field(
        default=None,
        description="Tier in the default program (if a member of it), else in the program joined first",
        examples=["gold"],
    )
    member_since: datetime | None = Field(default=None, description="Earliest loyalty enrolment")
    referrals_made: int = Field(default=0, description="Completed referrals the customer made")
    points_earned: int = Field(default=0, description="Points earned, all programs")
    points_redeemed: int = Field(default=0, description="Points redeemed, all programs")
    updated_at: datetime | None = None
    spend: list[SpendOut]
