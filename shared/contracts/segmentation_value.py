"""Events about a customer's value, risk and loyalty-ladder stage, published by segmentation."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar

from pydantic import BaseModel, Field

from shared.events.envelope import EventPayload, Topic

CUSTOMERS = Topic(
    name="crm.segmentation.customers",
    owner="segmentation",
    description=(
        "What segmentation concludes about a customer: abandonment-risk alerts for valuable customers "
        "and loyalty-ladder stage changes. Key: customer id."
    ),
)


class RiskReason(BaseModel):
    component: str = Field(
        examples=["recency"], description="The risk component (see GET /customers/{id}/value)"
    )
    points: int = Field(ge=0, le=100, examples=[35], description="Its contribution to the 0–100 score")


class CustomerAtRisk(EventPayload):
    """A customer in the top or high value tier crossed into high abandonment risk (once per crossing)."""

    event_type: ClassVar[str] = "crm.segmentation.customer_at_risk"
    topic: ClassVar[Topic] = CUSTOMERS

    customer_id: str
    risk_score: int = Field(ge=0, le=100, examples=[72])
    previous_level: str = Field(examples=["medium"])
    value_tier: str = Field(examples=["top"], description="top, high, medium or rest")
    reasons: list[RiskReason] = Field(description="Components that contributed, largest first")
    at: datetime


class LadderStageChanged(EventPayload):
    """A customer moved on the loyalty ladder (prospect, customer, client, supporter, advocate, partner)."""

    event_type: ClassVar[str] = "crm.segmentation.ladder_stage_changed"
    topic: ClassVar[Topic] = CUSTOMERS

    customer_id: str
    from_stage: str = Field(examples=["client"])
    to_stage: str = Field(examples=["supporter"])
    reason: str = Field(
        examples=["client (2+ purchases) with CSAT ≥ 4 or NPS passive/promoter, no open complaint"]
    )
    at: datetime
