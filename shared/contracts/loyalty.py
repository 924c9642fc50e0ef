"""Events published by the loyalty service."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar

from pydantic import Field

from shared.events.envelope import EventPayload, Topic

POINTS = Topic(
    name="crm.loyalty.points",
    owner="loyalty",
    description="Movements of members' points: earned, redeemed, expired. Key: customer id.",
)


class PointsEarned(EventPayload):
    """A member earned points (integer points), e.g. for a purchase."""

    event_type: ClassVar[str] = "crm.loyalty.points_earned"
    topic: ClassVar[Topic] = POINTS

    customer_id: str
    transaction_id: str = Field(description="The ledger transaction that credited the points")
    points: int = Field(ge=1)
    reason: str = Field(examples=["purchase"])
    reference: str | None = Field(default=None, description="What earned them, e.g. the purchase id")
    balance_after: int
    occurred_at: datetime
