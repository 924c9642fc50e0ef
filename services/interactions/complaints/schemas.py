"""HTTP schemas of complaints: what staff send (open, change status, assign, write) and what they read."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from services.interactions.complaints.domain import ComplaintStatus, Priority
from services.interactions.domain import Channel, Direction

MAX_MINOR = 10**15  # keeps amounts well inside a signed 64-bit integer
EXAMPLE_ID = "0b9a7c2e-3f4d-4e5a-8b6c-7d8e9f0a1b2c"
EXAMPLE_CUSTOMER = "6f1c2f1e-6a2b-4d7e-9c1a-1b2c3d4e5f60"


class ComplaintCreate(BaseModel):
    """A complaint or claim from a customer. The due dates come from the SLA policy of its channel and
    priority at the time it is opened."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "customer_id": EXAMPLE_CUSTOMER,
                    "channel": "email",
                    "priority": "high",
                    "category": "billing",
                    "subject": "Charged twice for order POS-2026-000123",
                    "description": "My card was charged twice for the same order on 20 November.",
                    "owner_id": "agent-17",
                    "owner_authority_minor": 5000,
                    "owner_authority_currency": "EUR",
                    "source_system": "helpdesk",
                    "idempotency_key": "ticket-88121",
                }
            ]
        },
    )

    customer_id: str = Field(min_length=1, max_length=36)
    channel: Channel
    priority: Priority = Priority.NORMAL
    category: str = Field(
        min_length=1,
        max_length=50,
        pattern=r"^[a-z0-9][a-z0-9_\-]*$",
        description="Lower-case code, e.g. billing, delivery, product_quality, staff",
        examples=["billing"],
    )
    subject: str = Field(min_length=1, max_length=300, description="One line (personal data)")
    description: str | None = Field(
        default=None, max_length=20_000, description="The customer's words (personal data): the first message"
    )
    opened_at: AwareDatetime = Field(
        default_factory=lambda: datetime.now(UTC),
        description="When the customer complained (default now; earlier when imported from another system)",
    )
    opened_by: str | None = Field(default=None, max_length=100, description="Staff member who took it")
    owner_id: str | None = Field(default=None, min_length=1, max_length=100, description="Who owns it")
    owner_authority_minor: int | None = Field(
        default=None,
        ge=0,
        le=MAX_MINOR,
        description="How much the owner may grant as compensation, in minor units",
        examples=[5000],
    )
    owner_authority_currency: str | None = Field(default=None, pattern=r"^[A-Z]{3}$", examples=["EUR"])
    source_system: str = Field(default="api", min_length=1, max_length=100)
    idempotency_key: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="The same key twice (per source system) opens the complaint once",
    )

    @field_validator("opened_at")
    @classmethod
    def _not_in_future(cls, value: datetime) -> datetime:
        if (value - datetime.now(UTC)).total_seconds() > 300:  # a little clock skew is tolerated
            raise ValueError("opened_at is in the future")
        return value


class StatusChange(BaseModel):
    """Move a complaint through its lifecycle. Closing needs `customer_agreed: true`."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"status": "acknowledged", "actor_id": "agent-17"},
                {"status": "resolved", "actor_id": "agent-17", "note": "Refunded the double charge."},
                {"status": "closed", "customer_agreed": True, "actor_id": "agent-17"},
                {"status": "reopened", "actor_id": "agent-17", "note": "The refund never arrived."},
            ]
        },
    )

    status: ComplaintStatus
    customer_agreed: bool = Field(
        default=False, description="Required (true) to close: the customer agrees the matter is settled"
    )
    actor_id: str | None = Field(default=None, max_length=100, description="Staff member making the change")
    note: str | None = Field(default=None, max_length=5_000, description="Why (personal data)")


class Assignment(BaseModel):
    """Give the complaint an owner, with the compensation they may grant on their own authority."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "owner_id": "supervisor-3",
                    "owner_authority_minor": 20000,
                    "owner_authority_currency": "EUR",
                    "actor_id": "agent-17",
                }
            ]
        },
    )

    owner_id: str = Field(min_length=1, max_length=100)
    owner_authority_minor: int | None = Field(default=None, ge=0, le=MAX_MINOR, examples=[20000])
    owner_authority_currency: str | None = Field(default=None, pattern=r"^[A-Z]{3}$", examples=["EUR"])
    actor_id: str | None = Field(default=None, max_length=100, description="Who assigned it")


class MessageCreate(BaseModel):
    """A message on a complaint: from the customer (inbound) or to them (outbound). The first outbound
    message is the first response (and acknowledges a complaint still `opened`)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "direction": "outbound",
                    "text": "We are sorry: the double charge will be refunded within 3 days.",
                    "author_id": "agent-17",
                },
                {"direction": "inbound", "channel": "phone", "text": "Called to ask about the refund."},
            ]
        },
    )

    direction: Direction
    text: str = Field(min_length=1, max_length=20_000, description="The message (personal data)")
    channel: Channel | None = Field(default=None, description="Default: the complaint's channel")
    author_id: str | None = Field(default=None, max_length=100, description="Staff member, if outbound")


class ComplaintEventOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    seq: int = Field(description="Order within the complaint, from 1")
    kind: str = Field(description="opened, status_changed, assigned, message or escalated")
    occurred_at: datetime
    actor_id: str | None
    from_status: str | None
    to_status: str | None
    direction: str | None = Field(description="inbound or outbound, for messages")
    channel: str | None
    text: str | None
    details: dict[str, Any]


class ComplaintOut(BaseModel):
    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={
            "examples": [
                {
                    "id": EXAMPLE_ID,
                    "customer_id": EXAMPLE_CUSTOMER,
                    "channel": "email",
                    "priority": "high",
                    "category": "billing",
                    "subject": "Charged twice for order POS-2026-000123",
                    "status": "acknowledged",
                    "allowed_next": ["in_progress", "resolved"],
                    "owner_id": "agent-17",
                    "owner_authority_minor": 5000,
                    "owner_authority_currency": "EUR",
                    "opened_at": "2026-11-20T10:15:00Z",
                    "first_response_at": "2026-11-20T11:02:00Z",
                    "resolved_at": None,
                    "closed_at": None,
                    "first_response_due": "2026-11-20T14:15:00Z",
                    "resolution_due": "2026-11-23T10:15:00Z",
                    "next_due_at": "2026-11-23T10:15:00Z",
                    "overdue": False,
                    "answered": True,
                    "first_response_breached": False,
                    "resolution_breached": False,
                    "escalation_level": 0,
                    "reopen_count": 0,
                    "version": 2,
                    "source_system": "helpdesk",
                    "idempotency_key": "ticket-88121",
                    "opened_by": None,
                    "interaction_id": "9d2e1c0b-5a4f-4e3d-8c2b-1a0f9e8d7c6b",
                    "updated_at": "2026-11-20T11:02:00Z",
                }
            ]
        },
    )

    id: str
    customer_id: str = Field(description="The customer today (follows merges)")
    channel: str
    priority: str
    category: str
    subject: str
    status: str
    allowed_next: list[str] = Field(description="Statuses it may move to now")
    owner_id: str | None
    owner_authority_minor: int | None = Field(description="Compensation the owner may grant, minor units")
    owner_authority_currency: str | None
    opened_at: datetime
    first_response_at: datetime | None
    resolved_at: datetime | None
    closed_at: datetime | None
    first_response_due: datetime
    resolution_due: datetime
    next_due_at: datetime | None = Field(description="The deadline it races now; null once resolved/closed")
    overdue: bool = Field(description="next_due_at has passed")
    answered: bool = Field(description="The customer has had a first response")
    first_response_breached: bool
    resolution_breached: bool
    escalation_level: int
    reopen_count: int
    version: int = Field(description="Also the ETag: send it as If-Match to change the complaint safely")
    source_system: str
    idempotency_key: str | None
    opened_by: str | None
    interaction_id: str = Field(description="The complaint's row on the customer timeline")
    updated_at: datetime


class ComplaintDetail(ComplaintOut):
    events: list[ComplaintEventOut] = Field(description="Its history, in order")


class ComplaintPage(BaseModel):
    items: list[ComplaintOut] = Field(description="Most urgent first: overdue, then nearest due")
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null at the end")


class SlaPolicyIn(BaseModel):
    """Targets for complaints opened from now on through this channel with this priority."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"first_response_minutes": 120, "resolution_minutes": 2880, "updated_by": "ops-lead"}
            ]
        },
    )

    first_response_minutes: int = Field(ge=1, le=525_600, description="At most a year")
    resolution_minutes: int = Field(ge=1, le=525_600, description="At least the first-response target")
    updated_by: str | None = Field(default=None, max_length=100)


class SlaPolicyOut(BaseModel):
    channel: str
    priority: str
    first_response_minutes: int
    resolution_minutes: int
    source: str = Field(description="default, or custom (set through this API)")
    updated_at: datetime | None
    updated_by: str | None


class EscalationOut(BaseModel):
    complaint_id: str
    customer_id: str
    target: str = Field(description="first_response or resolution")
    due_at: datetime
    escalation_level: int


class SlaScanResult(BaseModel):
    scanned_at: datetime
    escalated: list[EscalationOut] = Field(description="Breaches detected by this run (each only once)")


class SlaReportRow(BaseModel):
    channel: str
    priority: str
    opened: int = Field(description="Complaints opened in the window")
    answered: int = Field(description="… of which had a first response")
    answered_within_target_pct: float | None = Field(
        description="Share answered by the due time, among those answered or past due (null: none yet)"
    )
    resolved: int = Field(description="… of which are resolved or closed now")
    resolved_within_target_pct: float | None = Field(
        description="Share resolved by the due time, among those resolved or past due (null: none yet)"
    )
    median_first_response_minutes: float | None
    median_resolution_minutes: float | None
    open_overdue_now: int = Field(description="Complaints of this channel and priority overdue now (any age)")


class SlaReport(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "since": "2026-11-01T00:00:00Z",
                    "until": "2026-12-01T00:00:00Z",
                    "generated_at": "2026-11-24T09:00:00Z",
                    "rows": [
                        {
                            "channel": "email",
                            "priority": "high",
                            "opened": 40,
                            "answered": 38,
                            "answered_within_target_pct": 92.5,
                            "resolved": 31,
                            "resolved_within_target_pct": 80.0,
                            "median_first_response_minutes": 95.0,
                            "median_resolution_minutes": 2210.5,
                            "open_overdue_now": 2,
                        }
                    ],
                    "total": {
                        "channel": "all",
                        "priority": "all",
                        "opened": 40,
                        "answered": 38,
                        "answered_within_target_pct": 92.5,
                        "resolved": 31,
                        "resolved_within_target_pct": 80.0,
                        "median_first_response_minutes": 95.0,
                        "median_resolution_minutes": 2210.5,
                        "open_overdue_now": 2,
                    },
                }
            ]
        }
    )

    since: datetime
    until: datetime
    generated_at: datetime
    rows: list[SlaReportRow] = Field(description="One per channel and priority with any complaint")
    total: SlaReportRow = Field(description="Every channel and priority together (channel, priority: all)")
