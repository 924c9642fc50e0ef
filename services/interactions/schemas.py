"""Interactions' HTTP schemas."""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from services.interactions.domain import Channel

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

    @field_validator("occurred_at")
    @classmethod
    def _not_in_future(cls, value: datetime) -> datetime:
        if (value - datetime.now(UTC)).total_seconds() > 300:  # allow a little clock skew
            raise ValueError("occurred_at is in the future")
        return value


class PurchaseLineOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    line_no: int
    sku: str
    category: str | None
    quantity: int
    unit_price_minor: int


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
    lines: list[PurchaseLineOut]
