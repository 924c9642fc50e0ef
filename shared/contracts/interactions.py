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
    payment_status: str | None = Field(
        default=None,
        description="pending, authorized, paid or failed when recorded (absent from older events: paid)",
        examples=["paid"],
    )


CONTACTS = Topic(
    name="crm.interactions.contacts",
    owner="interactions",
    description="Every contact with a customer on any channel (the timeline). Key: customer id.",
)
COMPLAINTS = Topic(
    name="crm.interactions.complaints",
    owner="interactions",
    description="Complaints and claims through their lifecycle, service-level breaches. Key: customer id.",
)
SURVEYS = Topic(
    name="crm.interactions.surveys",
    owner="interactions",
    description="Satisfaction survey answers (CSAT, NPS, attribute ratings). Key: customer id.",
)


class InteractionRecorded(EventPayload):
    """A contact with a customer was recorded. Carries what it was, never its free text (personal data
    stays in the interactions service, so that erasure reaches it)."""

    event_type: ClassVar[str] = "crm.interactions.interaction_recorded"
    topic: ClassVar[Topic] = CONTACTS

    interaction_id: str
    customer_id: str
    kind: str = Field(
        description="inquiry, service_request, visit, …; purchase, complaint, survey_answer",
        examples=["inquiry"],
    )
    channel: str = Field(examples=["phone"])
    direction: str = Field(description="inbound (customer-initiated) or outbound", examples=["inbound"])
    occurred_at: datetime
    source_system: str = Field(examples=["callcentre"])
    agent_id: str | None = Field(default=None, description="Staff member who handled it")
    tags: list[str] = Field(default_factory=list, examples=[["billing"]])


class PurchaseRefunded(EventPayload):
    """Goods of a purchase were returned and/or money refunded. Amounts in minor units, in the currency
    of the original purchase. `refunded_total_minor / purchase_total_minor` is the share of the
    purchase given back so far, e.g. for clawing back what it earned in proportion."""

    event_type: ClassVar[str] = "crm.interactions.purchase_refunded"
    topic: ClassVar[Topic] = PURCHASES

    refund_id: str
    purchase_id: str = Field(description="The original purchase")
    customer_id: str
    occurred_at: datetime
    currency: str = Field(min_length=3, max_length=3, examples=["EUR"])
    amount_minor: int = Field(
        ge=0, description="Refunded by this refund, in minor units (0: goods back, no money)", examples=[4999]
    )
    purchase_total_minor: int = Field(ge=0, description="The original purchase's total")
    refunded_total_minor: int = Field(ge=0, description="Everything refunded on that purchase so far")
    lines: list[PurchaseLine] = Field(default_factory=list, description="Returned lines, if goods came back")
    reason: str | None = Field(default=None, examples=["damaged"])
    payment_status: str = Field(
        default="partially_refunded",
        description="The purchase's payment status afterwards: partially_refunded or refunded "
        "(paid when goods came back without money)",
        examples=["refunded"],
    )


class ComplaintOpened(EventPayload):
    """A complaint (claim) was opened. Segmentation uses it for abandonment risk. Carries the facts,
    never the subject or the customer's words."""

    event_type: ClassVar[str] = "crm.interactions.complaint_opened"
    topic: ClassVar[Topic] = COMPLAINTS

    complaint_id: str
    customer_id: str
    channel: str = Field(examples=["email"])
    priority: str = Field(description="low, normal, high or urgent", examples=["high"])
    category: str = Field(examples=["billing"])
    opened_at: datetime
    first_response_due: datetime
    resolution_due: datetime
    owner_id: str | None = Field(default=None, description="Staff member who owns it, if assigned at once")


class ComplaintStatusChanged(EventPayload):
    """A complaint moved through its lifecycle (opened → acknowledged → in progress → resolved →
    closed, or reopened). `answered` and `open` are what risk scoring needs: an open complaint never
    answered is a strong abandonment signal."""

    event_type: ClassVar[str] = "crm.interactions.complaint_status_changed"
    topic: ClassVar[Topic] = COMPLAINTS

    complaint_id: str
    customer_id: str
    from_status: str = Field(examples=["in_progress"])
    to_status: str = Field(examples=["resolved"])
    changed_at: datetime
    changed_by: str | None = None
    answered: bool = Field(description="Whether the customer has had a first response by now")
    open: bool = Field(description="Whether the complaint is still open (not closed) after the change")
    priority: str | None = Field(default=None, examples=["high"])
    category: str | None = Field(default=None, examples=["billing"])
    channel: str | None = Field(default=None, examples=["email"])
    opened_at: datetime | None = None
    first_response_at: datetime | None = Field(default=None, description="When it was first answered")
    resolved_at: datetime | None = Field(default=None, description="When it was resolved (null if not now)")
    escalation_level: int = Field(default=0, ge=0, description="Service-level breaches so far")
    reopen_count: int = Field(default=0, ge=0, description="How many times it was reopened")


class ComplaintSlaBreached(EventPayload):
    """A complaint missed a service-level target: escalate it. A complaint never answered is a strong
    abandonment signal. Published once per complaint and target."""

    event_type: ClassVar[str] = "crm.interactions.complaint_sla_breached"
    topic: ClassVar[Topic] = COMPLAINTS

    complaint_id: str
    customer_id: str
    target: str = Field(description="first_response or resolution", examples=["first_response"])
    due_at: datetime
    detected_at: datetime
    priority: str
    channel: str
    answered: bool = Field(description="Whether the customer had had any response at all")
    category: str | None = Field(default=None, examples=["billing"])
    status: str | None = Field(default=None, description="The complaint's status when detected")
    owner_id: str | None = Field(default=None, description="Who owned it when detected (null: nobody)")
    escalation_level: int = Field(default=1, ge=1, description="Breaches so far, this one included")


class SurveyAnswered(EventPayload):
    """A customer answered a satisfaction survey (its scores, never its comment: free text is personal
    data and stays in the interactions service). Ratings are 1–5 per attribute of the catalogue
    (people: courtesy, competence; product: quality, price, variety; premises: cleanliness, comfort)."""

    event_type: ClassVar[str] = "crm.interactions.survey_answered"
    topic: ClassVar[Topic] = SURVEYS

    survey_id: str
    customer_id: str
    answered_at: datetime
    channel: str
    about_interaction_id: str | None = Field(default=None, description="The contact the survey followed")
    csat: int | None = Field(default=None, ge=1, le=5, description="Customer satisfaction, 1–5")
    nps: int | None = Field(default=None, ge=0, le=10, description="Likelihood to recommend, 0–10")
    nps_category: str | None = Field(
        default=None, description="promoter (9–10), passive (7–8), detractor (0–6)"
    )
    overall: int | None = Field(default=None, description="Sum of the attribute ratings")
    overall_max: int | None = Field(
        default=None, description="The most the rated attributes could sum to (5 each)", examples=[10]
    )
    ratings: dict[str, int] = Field(default_factory=dict, examples=[{"courtesy": 5, "price": 3}])
    interaction_id: str | None = Field(default=None, description="The survey's own contact on the timeline")
