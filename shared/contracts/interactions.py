"""Events published by the interactions service."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar

from pydantic import BaseModel, Field

from shared.events.envelope import EventPayload, Topic

PURCHASES = Topic(
    name="crm.interactions.purchases",
    owner="interactions",
    description="Purchases, returns and refunds: the source of every value figure. Key: customer id.",
)


class PurchaseLine(BaseModel):
    sku: str = Field(examples=["SKU-1001"])
    category: str | None = Field(default=None, examples=["shoes"])
    quantity: int = Field(ge=1, examples=[2])
    unit_price_minor: int = Field(ge=0, description="Unit price in minor units (cents)", examples=[4999])


class PurchaseRecorded(EventPayload):
    """A purchase (order) was recorded for a customer. Amounts are integers in minor units."""

    event_type: ClassVar[str] = "crm.interactions.purchase_recorded"
    topic: ClassVar[Topic] = PURCHASES

    purchase_id: str = Field(description="The purchase's id in the platform")
    customer_id: str
    external_id: str | None = Field(default=None, description="The order id in the source system")
    channel: str = Field(examples=["store"])
    occurred_at: datetime
    currency: str = Field(min_length=3, max_length=3, examples=["EUR"])
    total_minor: int = Field(ge=0, description="Order total in minor units", examples=[9998])
    lines: list[PurchaseLine]
