"""Events published by the identity service."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar, Literal

from pydantic import Field

from shared.events.envelope import EventPayload, Topic

CUSTOMERS = Topic(
    name="crm.identity.customers",
    owner="identity",
    description="Lifecycle of customer profiles: registration, updates, merges, erasure. Key: customer id.",
)

CustomerKind = Literal["person", "organisation"]
CustomerStatus = Literal["prospect", "customer"]


class CustomerRegistered(EventPayload):
    """A new customer (golden record) exists."""

    event_type: ClassVar[str] = "crm.identity.customer_registered"
    topic: ClassVar[Topic] = CUSTOMERS

    customer_id: str = Field(
        description="The new customer's id", examples=["6f1c2f1e-6a2b-4d7e-9c1a-1b2c3d4e5f60"]
    )
    kind: CustomerKind = Field(description="person or organisation")
    status: CustomerStatus = Field(description="prospect (no purchase yet) or customer")
    source_system: str | None = Field(
        default=None, description="System the first record came from", examples=["web"]
    )
    registered_at: datetime
