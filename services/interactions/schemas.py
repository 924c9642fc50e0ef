"""Interactions' HTTP schemas."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Literal

import orjson
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    computed_field,
    field_validator,
    model_validator,
)

from services.interactions.domain import RECORDABLE_KINDS, Channel, Direction, InteractionKind
from services.interactions.refunds import INITIAL_STATUSES, PaymentStatus

MAX_MINOR = 10**15  # a bound that keeps totals well inside a signed 64-bit integer


class PurchaseLineIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sku: str = Field(min_length=1, max_length=100, examples=["SKU-1001"])
    category: str | None = Field(default=None, max_length=100, examples=["shoes"])
    quantity: int = Field(ge=1, le=1_000_000, examples=[2])
    unit_price_minor: int = Field(
        ge=0, le=MAX_MINOR, description="Unit price in minor units", examples=[4999]
    )


class PurchaseCreate(BaseModel):
    """A purchase (order). Amounts are integers in the currency's minor units (cents)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "customer_id": "6f1c2f1e-6a2b-4d7e-9c1a-1b2c3d4e5f60",
                    "external_id": "POS-2026-000123",
                    "source_system": "pos",
                    "channel": "store",
                    "occurred_at": "2026-11-20T10:15:00Z",
                    "currency": "EUR",
                    "lines": [
                        {"sku": "SKU-1001", "category": "shoes", "quantity": 2, "unit_price_minor": 4999}
                    ],
                }
            ]
        },
    )

    customer_id: str = Field(min_length=1, max_length=36)
    external_id: str | None = Field(
        default=None,
        max_length=100,
        description="Order id in the source system; the same id twice records it once",
    )
    source_system: str = Field(default="api", min_length=1, max_length=100)
    channel: Channel = Channel.STORE
    occurred_at: AwareDatetime = Field(default_factory=lambda: datetime.now(UTC))
    currency: str = Field(pattern=r"^[A-Z]{3}$", description="ISO 4217 code", examples=["EUR"])
    lines: list[PurchaseLineIn] = Field(min_length=1, max_length=1000)
    payment_status: PaymentStatus = Field(
        default=PaymentStatus.PAID,
        description="pending, authorized, paid (the default: paid at the till) or failed; "
        "update it later with `POST /purchases/{id}/payment-status`",
    )

    @field_validator("occurred_at")
    @classmethod
    def _not_in_future(cls, value: datetime) -> datetime:
        if (value - datetime.now(UTC)).total_seconds() > 300:  # allow a little clock skew
            raise ValueError("occurred_at is in the future")
        return value

    @field_validator("payment_status")
    @classmethod
    def _initial(cls, value: PaymentStatus) -> PaymentStatus:
        if value not in INITIAL_STATUSES:
            raise ValueError(
                "a purchase is recorded pending, authorized, paid or failed; refunds set the rest"
            )
        return value


class PurchaseLineOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    line_no: int
    sku: str
    category: str | None
    quantity: int
    unit_price_minor: int
    returned_quantity: int = Field(description="Units of this line returned so far")


class RefundLineIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    line_no: int = Field(ge=1, description="The purchase line (1 for the first)", examples=[1])
    quantity: int = Field(ge=1, le=1_000_000, description="Units coming back", examples=[1])


class RefundCreate(BaseModel):
    """A return and/or refund on a purchase: returned `lines` (goods back, by line and quantity), an
    `amount_minor` (money back, in the purchase's currency), or both. Without an amount, the returned
    goods are refunded at the price paid."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "lines": [{"line_no": 1, "quantity": 1}],
                    "reason": "wrong size",
                    "source_system": "pos",
                    "idempotency_key": "RET-2026-000041",
                },
                {
                    "amount_minor": 1000,
                    "currency": "EUR",
                    "reason": "goodwill: late delivery",
                    "source_system": "callcentre",
                    "idempotency_key": "GW-88121",
                },
                {
                    "lines": [{"line_no": 1, "quantity": 2}],
                    "amount_minor": 8998,
                    "currency": "EUR",
                    "reason": "returned after 30 days: restocking fee kept",
                    "source_system": "web",
                    "idempotency_key": "RMA-5521",
                },
            ]
        },
    )

    lines: list[RefundLineIn] = Field(default_factory=list, max_length=1000)
    amount_minor: int | None = Field(
        default=None,
        ge=0,
        le=MAX_MINOR,
        description="Money given back, in minor units; the value of the returned lines when omitted",
        examples=[4999],
    )
    currency: str | None = Field(
        default=None,
        pattern=r"^[A-Z]{3}$",
        description="Currency of `amount_minor`: must be the purchase's (required with an amount)",
        examples=["EUR"],
    )
    reason: str = Field(
        min_length=1,
        max_length=200,
        description="Why (a reason code or short phrase; no personal data: it travels in events)",
        examples=["damaged"],
    )
    channel: Channel | None = Field(default=None, description="Where it happened; the purchase's by default")
    occurred_at: AwareDatetime = Field(default_factory=lambda: datetime.now(UTC))
    source_system: str = Field(default="api", min_length=1, max_length=100)
    idempotency_key: str = Field(
        min_length=1,
        max_length=200,
        description="The same key twice (per source system) records the refund once: retries are safe",
    )

    @field_validator("occurred_at")
    @classmethod
    def _not_in_future(cls, value: datetime) -> datetime:
        if (value - datetime.now(UTC)).total_seconds() > 300:
            raise ValueError("occurred_at is in the future")
        return value


class RefundLineOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    line_no: int
    quantity: int


class RefundOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    purchase_id: str
    customer_id: str
    source_system: str
    idempotency_key: str
    channel: str
    occurred_at: datetime
    recorded_at: datetime
    currency: str
    amount_minor: int = Field(description="Money given back by this refund, in minor units")
    reason: str
    lines: list[RefundLineOut] = Field(description="Goods returned with it")


class PurchaseOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    customer_id: str
    external_id: str | None
    source_system: str
    channel: str
    occurred_at: datetime
    currency: str
    total_minor: int
    created_at: datetime
    payment_status: PaymentStatus
    payment_status_at: datetime | None = Field(description="When the payment status last changed")
    refunded_total_minor: int = Field(description="Everything refunded so far, in minor units")
    lines: list[PurchaseLineOut]
    refunds: list[RefundOut] = Field(description="Returns and refunds, oldest first")

    @computed_field(description="What can still be refunded, in minor units")  # type: ignore[prop-decorator]
    @property
    def refundable_minor(self) -> int:
        return self.total_minor - self.refunded_total_minor


class RefundResult(BaseModel):
    refund: RefundOut
    purchase: PurchaseOut = Field(description="The purchase after the refund")


class PaymentStatusUpdate(BaseModel):
    """A payment status change. Allowed: pending → authorized | paid | failed | cancelled;
    authorized → paid | failed | cancelled; failed → pending | paid | cancelled. partially_refunded
    and refunded follow from refunds; paid, refunded and cancelled are otherwise final."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"status": "paid", "occurred_at": "2026-11-20T10:17:00Z"}]},
    )

    status: PaymentStatus
    occurred_at: AwareDatetime = Field(
        default_factory=lambda: datetime.now(UTC), description="When the payment changed (now by default)"
    )

    @field_validator("occurred_at")
    @classmethod
    def _not_in_future(cls, value: datetime) -> datetime:
        if (value - datetime.now(UTC)).total_seconds() > 300:
            raise ValueError("occurred_at is in the future")
        return value


class CustomerRef(BaseModel):
    """Who the contact was with, when the caller does not know the customer id: one identifier,
    resolved by the identity service (it must match exactly one customer)."""

    model_config = ConfigDict(extra="forbid")

    email: str | None = Field(default=None, max_length=320, examples=["ana.garcia@example.com"])
    phone: str | None = Field(default=None, max_length=40, examples=["+34 612 345 678"])
    card: str | None = Field(default=None, max_length=64, examples=["CRM-0042-1187"])

    @model_validator(mode="after")
    def _exactly_one(self) -> CustomerRef:
        given = [name for name in ("email", "phone", "card") if getattr(self, name)]
        if len(given) != 1:
            raise ValueError("give exactly one of email, phone, card")
        return self


class InteractionCreate(BaseModel):
    """A contact with a customer on any channel. `customer_id` or `customer` (an identifier)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "customer_id": "6f1c2f1e-6a2b-4d7e-9c1a-1b2c3d4e5f60",
                    "channel": "phone",
                    "direction": "inbound",
                    "kind": "inquiry",
                    "occurred_at": "2026-11-20T10:15:00Z",
                    "agent_id": "agent-17",
                    "text": "Asked when the winter catalogue ships.",
                    "tags": ["catalogue"],
                    "source_system": "callcentre",
                    "idempotency_key": "call-88121",
                },
                {
                    "customer": {"email": "ana.garcia@example.com"},
                    "channel": "web",
                    "direction": "inbound",
                    "kind": "web_activity",
                    "attributes": {"page": "/winter-sale", "seconds": 42},
                    "source_system": "web",
                },
            ]
        },
    )

    customer_id: str | None = Field(default=None, min_length=1, max_length=36)
    customer: CustomerRef | None = None
    channel: Channel
    direction: Direction = Direction.INBOUND
    kind: InteractionKind = Field(
        description="inquiry, service_request, visit, event_attendance, "
        "campaign_response, suggestion, web_activity, app_activity or note"
    )
    occurred_at: AwareDatetime = Field(default_factory=lambda: datetime.now(UTC))
    agent_id: str | None = Field(default=None, max_length=100, description="Staff member who handled it")
    summary: str | None = Field(default=None, max_length=300, description="One line for the timeline")
    text: str | None = Field(default=None, max_length=20_000, description="Free text (personal data)")
    tags: list[str] = Field(default_factory=list, max_length=20)
    attributes: dict[str, Any] = Field(default_factory=dict, description="Structured details")
    source_system: str = Field(default="api", min_length=1, max_length=100)
    idempotency_key: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="The same key twice (per source system) records the contact once",
    )

    @field_validator("tags")
    @classmethod
    def _tags(cls, tags: list[str]) -> list[str]:
        for tag in tags:
            if not (1 <= len(tag) <= 50):
                raise ValueError("tags are 1 to 50 characters")
        return tags

    @field_validator("kind")
    @classmethod
    def _recordable(cls, kind: InteractionKind) -> InteractionKind:
        if kind not in RECORDABLE_KINDS:
            raise ValueError(
                f"{kind.value} contacts are recorded by their own endpoint (purchases, complaints, surveys)"
            )
        return kind

    @field_validator("occurred_at")
    @classmethod
    def _not_in_future(cls, value: datetime) -> datetime:
        if (value - datetime.now(UTC)).total_seconds() > 300:
            raise ValueError("occurred_at is in the future")
        return value

    @field_validator("attributes")
    @classmethod
    def _small(cls, value: dict[str, Any]) -> dict[str, Any]:
        if len(orjson.dumps(value)) > 16_384:
            raise ValueError("attributes are at most 16 KiB of JSON")
        return value

    @model_validator(mode="after")
    def _who(self) -> InteractionCreate:
        if (self.customer_id is None) == (self.customer is None):
            raise ValueError("give customer_id or customer (an identifier), not both")
        return self


class InteractionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    customer_id: str
    kind: str
    channel: str
    direction: str
    occurred_at: datetime
    recorded_at: datetime
    source_system: str
    idempotency_key: str | None
    agent_id: str | None
    summary: str | None
    text: str | None
    tags: list[str]
    attributes: dict[str, Any]
    subject_type: str | None = Field(description="purchase, refund, complaint, survey, communication")
    subject_id: str | None


class TimelinePage(BaseModel):
    items: list[InteractionOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next (older) page; null at the end")


class BulkInteractions(BaseModel):
    """Up to 5,000 contacts in one request. Each item is validated on its own: a bad one is reported
    (with its index, field and reason) and never blocks the others."""

    model_config = ConfigDict(extra="forbid")

    items: list[dict[str, Any]] = Field(
        min_length=1,
        max_length=5_000,
        description="Contacts, each shaped like the body of `POST /interactions`",
        examples=[
            [
                {
                    "customer_id": "0b6f3c5e-8a47-4c1a-9d8e-3f2a1b4c5d6e",
                    "kind": "inquiry",
                    "channel": "phone",
                    "direction": "inbound",
                    "source_system": "callcentre",
                    "idempotency_key": "call-20261123-0001",
                    "occurred_at": "2026-11-23T09:30:00Z",
                }
            ]
        ],
    )


class BulkPurchases(BaseModel):
    """Up to 5,000 purchases in one request, each shaped like the body of `POST /purchases` and
    validated on its own."""

    model_config = ConfigDict(extra="forbid")

    items: list[dict[str, Any]] = Field(
        min_length=1,
        max_length=5_000,
        description="Purchases, each shaped like the body of `POST /purchases`",
        examples=[
            [
                {
                    "customer_id": "0b6f3c5e-8a47-4c1a-9d8e-3f2a1b4c5d6e",
                    "channel": "store",
                    "source_system": "till-042",
                    "external_id": "R-2026-11-23-0001",
                    "currency": "EUR",
                    "occurred_at": "2026-11-23T09:30:00Z",
                    "lines": [{"sku": "SKU-1", "quantity": 2, "unit_price_minor": 1250}],
                }
            ]
        ],
    )


class BulkItemResult(BaseModel):
    index: int
    status: Literal["created", "duplicate", "rejected"]
    id: str | None = None
    errors: list[dict[str, str]] = Field(default_factory=list, description="field and message, if rejected")


class BulkResult(BaseModel):
    created: int
    duplicates: int
    rejected: int
    items: list[BulkItemResult]

    @classmethod
    def of(cls, results: Sequence[BulkItemResult | None]) -> BulkResult:
        """The summary of a bulk request's per-item results (in request order)."""
        done = [r for r in results if r is not None]
        return cls(
            created=sum(r.status == "created" for r in done),
            duplicates=sum(r.status == "duplicate" for r in done),
            rejected=sum(r.status == "rejected" for r in done),
            items=done,
        )
