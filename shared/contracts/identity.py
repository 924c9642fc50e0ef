"""Events published by the identity service.

They carry ids and business facts, not personal data: a consumer that needs a name or an e-mail
asks identity, so that erasing a customer erases them everywhere, Kafka's retained logs included.
"""

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
CONSENTS = Topic(
    name="crm.identity.consents",
    owner="identity",
    description="Consents and contact preferences per channel and purpose. Key: customer id.",
)

CustomerKind = Literal["person", "organisation"]
CustomerStatus = Literal["prospect", "customer"]
ConsentStatus = Literal["granted", "denied", "withdrawn"]


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


class CustomerUpdated(EventPayload):
    """A customer's golden record changed. Lists which fields changed, not their values."""

    event_type: ClassVar[str] = "crm.identity.customer_updated"
    topic: ClassVar[Topic] = CUSTOMERS

    customer_id: str
    record_version: int = Field(description="The golden record's version after the change")
    changed_fields: list[str] = Field(examples=[["email", "addresses"]])
    cause: str = Field(description="What changed it: edit, source_record, merge, unmerge", examples=["edit"])
    updated_at: datetime


class CustomerMerged(EventPayload):
    """Two golden records were found to be one customer: `merged_id` now resolves to `customer_id`.

    Consumers move whatever they keep under `merged_id` to `customer_id` (the survivor)."""

    event_type: ClassVar[str] = "crm.identity.customer_merged"
    topic: ClassVar[Topic] = CUSTOMERS

    customer_id: str = Field(description="The surviving customer")
    merged_id: str = Field(description="The customer absorbed into the survivor")
    merge_id: str = Field(description="The merge, for lineage and unmerge")
    method: Literal["deterministic", "probabilistic", "review", "manual"]
    score: float | None = Field(default=None, description="Match probability when scored")
    merged_at: datetime


class CustomerUnmerged(EventPayload):
    """A merge was undone: `restored_id` is a customer of its own again.

    Consumers move back what belongs to `restored_id` (the `source_refs` say which records)."""

    event_type: ClassVar[str] = "crm.identity.customer_unmerged"
    topic: ClassVar[Topic] = CUSTOMERS

    customer_id: str = Field(description="The former survivor")
    restored_id: str = Field(description="The customer split off again")
    merge_id: str
    unmerged_at: datetime


class CustomerErased(EventPayload):
    """The customer's personal data must go: every service deletes or anonymises its copy."""

    event_type: ClassVar[str] = "crm.identity.customer_erased"
    topic: ClassVar[Topic] = CUSTOMERS

    customer_id: str
    erased_ids: list[str] = Field(description="The customer and every id merged into it")
    erased_at: datetime


class ConsentChanged(EventPayload):
    """A consent for a channel and purpose was granted, denied or withdrawn."""

    event_type: ClassVar[str] = "crm.identity.consent_changed"
    topic: ClassVar[Topic] = CONSENTS

    customer_id: str
    channel: str = Field(examples=["email"])
    purpose: str = Field(examples=["marketing"])
    status: ConsentStatus
    previous_status: ConsentStatus | None = None
    changed_at: datetime
