"""HTTP schemas: outbound communications and their delivery events."""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from services.interactions.communications.domain import INITIAL, BounceType, DeliveryStatus
from services.interactions.domain import Channel

#: Channels we send messages on (a shop counter or a kiosk is where customers come to us).
OUTBOUND_CHANNELS = frozenset(
    {
        Channel.EMAIL,
        Channel.SMS,
        Channel.DIRECT_MAIL,
        Channel.PHONE,
        Channel.APP,
        Channel.FAX,
        Channel.SOCIAL,
        Channel.CHAT,
    }
)


def _not_in_future(value: datetime) -> datetime:
    if (value - datetime.now(UTC)).total_seconds() > 300:  # allow a little clock skew
        raise ValueError("is in the future")
    return value


class CommunicationCreate(BaseModel):
    """A message sent to a customer. `address` is the e-mail address, phone number or postal address
    it went to (personal data: erased with the customer)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "customer_id": "6f1c2f1e-6a2b-4d7e-9c1a-1b2c3d4e5f60",
                    "channel": "email",
                    "campaign_id": "winter-sale-2026",
                    "template_id": "winter-sale-a",
                    "subject": "Our winter sale starts today",
                    "address": "ana.garcia@example.com",
                    "sent_at": "2026-11-20T08:00:00Z",
                    "source_system": "esp",
                    "idempotency_key": "msg-0001-88121",
                },
                {
                    "customer_id": "6f1c2f1e-6a2b-4d7e-9c1a-1b2c3d4e5f60",
                    "channel": "direct_mail",
                    "campaign_id": "catalogue-2027",
                    "address": "Calle Mayor 12, 28013 Madrid, ES",
                    "status": "queued",
                    "source_system": "print-house",
                    "idempotency_key": "cat27-000412",
                },
            ]
        },
    )

    customer_id: str = Field(min_length=1, max_length=36)
    channel: Channel = Field(description="email, sms, direct_mail, phone, app, fax, social or chat")
    campaign_id: str | None = Field(default=None, max_length=100, description="The campaign it was part of")
    template_id: str | None = Field(default=None, max_length=100, description="The template or creative used")
    subject: str | None = Field(default=None, max_length=300, description="Subject line or title")
    address: str = Field(
        min_length=1,
        max_length=500,
        description="Where it was sent: e-mail address, phone number, postal address, device",
    )
    sent_at: AwareDatetime = Field(
        default_factory=lambda: datetime.now(UTC), description="When it was sent (or queued)"
    )
    status: DeliveryStatus = Field(default=DeliveryStatus.SENT, description="queued or sent (the default)")
    source_system: str = Field(default="api", min_length=1, max_length=100)
    idempotency_key: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="The same key twice (per source system) records the communication once",
    )

    @field_validator("channel")
    @classmethod
    def _outbound(cls, value: Channel) -> Channel:
        if value not in OUTBOUND_CHANNELS:
            raise ValueError(f"we do not send messages on {value.value}")
        return value

    @field_validator("status")
    @classmethod
    def _initial(cls, value: DeliveryStatus) -> DeliveryStatus:
        if value not in INITIAL:
            raise ValueError("a communication is recorded queued or sent; report the rest as delivery events")
        return value

    _sent_at = field_validator("sent_at")(_not_in_future)


class DeliveryEventCreate(BaseModel):
    """What happened to a communication: from the e-mail/SMS provider's webhooks, the post office's
    returns, the call centre's dialler."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"status": "delivered", "occurred_at": "2026-11-20T08:00:05Z", "idempotency_key": "evt-1"},
                {
                    "status": "bounced",
                    "bounce_type": "hard",
                    "reason": "550 5.1.1 mailbox does not exist",
                    "idempotency_key": "evt-2",
                },
                {"status": "returned", "reason": "addressee unknown at this address"},
            ]
        },
    )

    status: DeliveryStatus = Field(
        description="queued, sent, delivered, opened, clicked, bounced (e-mail, SMS, app), "
        "returned (direct mail) or failed"
    )
    occurred_at: AwareDatetime = Field(default_factory=lambda: datetime.now(UTC))
    bounce_type: BounceType | None = Field(default=None, description="hard or soft: required with bounced")
    reason: str | None = Field(
        default=None,
        min_length=1,
        max_length=500,
        description="Why it bounced, was returned or failed (required then)",
    )
    idempotency_key: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="The provider's event id: the same one twice is recorded once",
    )

    _occurred_at = field_validator("occurred_at")(_not_in_future)


class DeliveryEventOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    status: str
    occurred_at: datetime
    recorded_at: datetime
    bounce_type: str | None
    reason: str | None
    idempotency_key: str | None


class CommunicationOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    customer_id: str
    channel: str
    campaign_id: str | None
    template_id: str | None
    subject: str | None
    address: str
    sent_at: datetime
    recorded_at: datetime
    source_system: str
    idempotency_key: str | None
    status: str = Field(description="The current delivery status: the furthest reached, or the failure")
    status_at: datetime
    bounce_type: str | None = Field(description="hard or soft, when the current status is bounced")
    status_reason: str | None = Field(description="Why it bounced, was returned or failed")
    interaction_id: str = Field(description="Its row on the customer's timeline")
    deliveries: list[DeliveryEventOut] = Field(description="Every delivery event, in the order they happened")
