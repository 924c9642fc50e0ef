"""Request and response bodies of the webhook API."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

EVENT_TYPE_EXAMPLE = "crm.loyalty.points_earned.v1"


class SubscriptionIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "url": "https://erp.example.com/hooks/crm",
                    "event_types": ["crm.interactions.purchase_recorded.v1", EVENT_TYPE_EXAMPLE],
                    "description": "ERP points sync",
                }
            ]
        },
    )

    url: str = Field(
        min_length=8,
        max_length=2000,
        description="Where events are POSTed. HTTPS only (http://localhost for local tools when allowed).",
        examples=["https://erp.example.com/hooks/crm"],
    )
    event_types: list[str] = Field(
        min_length=1,
        max_length=200,
        description="Versioned CloudEvents types, as listed in /asyncapi.json (`x-cloudevents-type`)",
        examples=[[EVENT_TYPE_EXAMPLE]],
    )
    description: str | None = Field(default=None, max_length=200, examples=["ERP points sync"])


class SubscriptionOut(BaseModel):
    id: str = Field(examples=["5b0c6a4e-0a8f-4e59-9d0e-8f1b3c2d4e5f"])
    url: str = Field(examples=["https://erp.example.com/hooks/crm"])
    event_types: list[str] = Field(examples=[[EVENT_TYPE_EXAMPLE]])
    description: str | None
    active: bool
    created_at: datetime


class SubscriptionCreated(SubscriptionOut):
    secret: str = Field(
        description=(
            "The signing secret. Shown only in this response: store it, and verify each delivery's "
            '`X-CRM-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">` with it.'
        ),
        examples=["whsec_3q2-7wJtY0bq9nG6tH8kT1mZ4rX5cV0bN2lP7sD9fA"],
    )


class SubscriptionList(BaseModel):
    items: list[SubscriptionOut]


class AttemptOut(BaseModel):
    attempt: int = Field(examples=[1])
    attempted_at: datetime
    status_code: int | None = Field(
        description="The receiver's HTTP status; null if unreachable", examples=[500]
    )
    error: str | None = Field(examples=["HTTP 500"])
    duration_ms: int = Field(examples=[42])


class DeliveryOut(BaseModel):
    id: str
    event_id: str = Field(description="The CloudEvent id (also sent as `X-CRM-Event-Id`)")
    event_type: str = Field(examples=[EVENT_TYPE_EXAMPLE])
    status: str = Field(
        description="pending, delivered, failed (gave up) or cancelled", examples=["delivered"]
    )
    attempts: int = Field(examples=[3])
    next_attempt_at: datetime | None = Field(description="When the next try is due (pending only)")
    last_status_code: int | None = Field(examples=[200])
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None
    attempt_log: list[AttemptOut] = Field(description="Every try, oldest first")


class DeliveryList(BaseModel):
    items: list[DeliveryOut] = Field(description="Newest first")


class EventTypeOut(BaseModel):
    type: str = Field(examples=[EVENT_TYPE_EXAMPLE])
    topic: str = Field(examples=["crm.loyalty.points"])
    summary: str


class EventTypeList(BaseModel):
    items: list[EventTypeOut]
