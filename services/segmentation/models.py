"""Segmentation's tables: per-customer features kept current from events, the facts they are computed
from, and the messaging tables.

Every fact table has `customer_id` (whose fact it is today: it follows merges) and
`origin_customer_id` (the customer it was recorded for), so an unmerge gives each customer back exactly
the facts recorded for it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, Float, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from shared.db import ServiceBase, UTCDateTime, new_metadata
from shared.messaging.tables import messaging_tables

metadata = new_metadata()
MESSAGING = messaging_tables(metadata)


def recorded_for(context: Any) -> Any:
    """A fact inserted without an origin was recorded for the customer it is stored under."""
    return context.get_current_parameters()["customer_id"]


class Base(ServiceBase):
    __abstract__ = True
    metadata = metadata


class CustomerFeatures(Base):
    """What segmentation knows of one customer, derived from the facts below by `features.refresh`
    (always the same computation, whether one event arrived or everything is replayed). Amounts are in
    the customer's main `currency` (the one they spent most in); time-relative values (days since the
    last purchase, tenure) are computed against "now" where they are used, never stored.

    `satisfaction_latest` is the customer's latest scored survey on a 0–10 scale (its NPS, or else its
    CSAT mapped 1→0 … 5→10) and `satisfaction_before` the average of their earlier scored surveys on the
    same scale (None with fewer than two): the falling-satisfaction risk compares the two.

    Loyalty (from the loyalty service's events): `loyalty_member` is whether the customer holds any
    membership, `loyalty_programs` the ids of the programs they are a member of, `member_since` their
    earliest enrolment. `loyalty_tier` is their tier in the `default` program when they are a member of
    it, and otherwise in the program they joined first (tiers are defined per program, and segmentation
    does not know their ranks, so it never compares tiers of different programs); where a merge left a
    customer two memberships of one program, their own (recorded for them) counts, as in loyalty.
    `referrals_made` counts the completed referrals the customer made; `points_earned` and
    `points_redeemed` are the points earned and spent in all programs together (gross: deductions and
    expiries are not subtracted)."""

    __tablename__ = "customer_features"
    __table_args__ = {"postgresql_with": {"fillfactor": 70}}  # room for in-place updates (migration 0009)

    customer_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    registered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    erased: Mapped[bool] = mapped_column(Boolean, default=False)
    first_purchase_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_purchase_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    purchase_count: Mapped[int] = mapped_column(Integer, default=0)
    refund_count: Mapped[int] = mapped_column(Integer, default=0)
    currency: Mapped[str | None] = mapped_column(String(3))
    total_spend_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    refunded_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    net_spend_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    average_order_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    mean_interpurchase_days: Mapped[float | None] = mapped_column(Float)
    channels: Mapped[list[str]] = mapped_column(JSON, default=lambda: [])
    channel_count: Mapped[int] = mapped_column(Integer, default=0)
    multichannel: Mapped[bool] = mapped_column(Boolean, default=False)
    contact_count: Mapped[int] = mapped_column(Integer, default=0)
    last_contact_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    complaint_count: Mapped[int] = mapped_column(Integer, default=0)
    open_complaints: Mapped[int] = mapped_column(Integer, default=0)
    unanswered_complaints: Mapped[int] = mapped_column(Integer, default=0)
    sla_breaches: Mapped[int] = mapped_column(Integer, default=0)
    last_csat: Mapped[int | None] = mapped_column(Integer)
    last_nps: Mapped[int | None] = mapped_column(Integer)
    nps_category: Mapped[str | None] = mapped_column(String(10))
    last_survey_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    satisfaction_latest: Mapped[float | None] = mapped_column(Float)
    satisfaction_before: Mapped[float | None] = mapped_column(Float)
    loyalty_member: Mapped[bool] = mapped_column(Boolean, default=False)
    loyalty_programs: Mapped[list[str]] = mapped_column(JSON, default=lambda: [])
    loyalty_tier: Mapped[str | None] = mapped_column(String(40))
    member_since: Mapped[datetime | None] = mapped_column(UTCDateTime())
    referrals_made: Mapped[int] = mapped_column(Integer, default=0)
    points_earned: Mapped[int] = mapped_column(BigInteger, default=0)
    points_redeemed: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class CustomerSpend(Base):
    """Total spend per customer and currency (minor units): amounts in different currencies never mix."""

    __tablename__ = "customer_spend"

    customer_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    currency: Mapped[str] = mapped_column(String(3), primary_key=True)
    purchase_count: Mapped[int] = mapped_column(Integer, default=0)
    total_minor: Mapped[int] = mapped_column(BigInteger, default=0)


class PurchaseFact(Base):
    """Each purchase once: the facts features are derived (and recomputed) from."""

    __tablename__ = "purchase_facts"
    __table_args__ = (Index("ix_purchase_facts_customer_time", "customer_id", "occurred_at"),)

    purchase_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(36))
    origin_customer_id: Mapped[str] = mapped_column(String(36), index=True, default=recorded_for)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime())
    currency: Mapped[str] = mapped_column(String(3))
    total_minor: Mapped[int] = mapped_column(BigInteger)
    channel: Mapped[str] = mapped_column(String(30))


class RefundFact(Base):
    """Each refund once (`purchase_refunded`)."""

    __tablename__ = "refund_facts"
    __table_args__ = (Index("ix_refund_facts_customer", "customer_id"),)

    refund_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    purchase_id: Mapped[str] = mapped_column(String(36))
    customer_id: Mapped[str] = mapped_column(String(36))
    origin_customer_id: Mapped[str] = mapped_column(String(36), index=True, default=recorded_for)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime())
    currency: Mapped[str] = mapped_column(String(3))
    amount_minor: Mapped[int] = mapped_column(BigInteger)


class ContactFact(Base):
    """Each contact once (`interaction_recorded`): kind, channel, direction, time."""

    __tablename__ = "contact_facts"
    __table_args__ = (Index("ix_contact_facts_customer_time", "customer_id", "occurred_at"),)

    interaction_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(36))
    origin_customer_id: Mapped[str] = mapped_column(String(36), index=True, default=recorded_for)
    kind: Mapped[str] = mapped_column(String(30))
    channel: Mapped[str] = mapped_column(String(30))
    direction: Mapped[str] = mapped_column(String(10))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ComplaintFact(Base):
    """Each complaint, as its latest event left it."""

    __tablename__ = "complaint_facts"
    __table_args__ = (Index("ix_complaint_facts_customer", "customer_id"),)

    complaint_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(36))
    origin_customer_id: Mapped[str] = mapped_column(String(36), index=True, default=recorded_for)
    opened_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    status: Mapped[str] = mapped_column(String(20))
    answered: Mapped[bool] = mapped_column(Boolean, default=False)
    open: Mapped[bool] = mapped_column(Boolean, default=True)
    breaches: Mapped[int] = mapped_column(Integer, default=0)
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime())


class SurveyFact(Base):
    """Each survey answer once (`survey_answered`)."""

    __tablename__ = "survey_facts"
    __table_args__ = (Index("ix_survey_facts_customer_time", "customer_id", "answered_at"),)

    survey_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(36))
    origin_customer_id: Mapped[str] = mapped_column(String(36), index=True, default=recorded_for)
    answered_at: Mapped[datetime] = mapped_column(UTCDateTime())
    csat: Mapped[int | None] = mapped_column(Integer)
    nps: Mapped[int | None] = mapped_column(Integer)
    overall: Mapped[int | None] = mapped_column(Integer)


class LoyaltyMembershipFact(Base):
    """Each loyalty membership (`member_enrolled`, `tier_changed`), upserted: its tier is the one of the
    latest tier change seen (`tier_changed_at`; an older change arriving late is ignored). A tier change
    arriving before the enrolment creates the row without `enrolled_at`; the enrolment fills it in."""

    __tablename__ = "loyalty_membership_facts"
    __table_args__ = (Index("ix_loyalty_membership_facts_customer", "customer_id"),)

    member_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(36))
    origin_customer_id: Mapped[str] = mapped_column(String(36), index=True, default=recorded_for)
    program_id: Mapped[str] = mapped_column(String(40))
    enrolled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    tier: Mapped[str | None] = mapped_column(String(40))
    tier_changed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class ReferralFact(Base):
    """Each completed referral once (`referral_completed`), a fact of the referrer: one per referred
    customer and program."""

    __tablename__ = "referral_facts"
    __table_args__ = (Index("ix_referral_facts_customer", "customer_id"),)

    referred_customer_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    program_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(36))
    origin_customer_id: Mapped[str] = mapped_column(String(36), index=True, default=recorded_for)
    completed_at: Mapped[datetime] = mapped_column(UTCDateTime())


class LoyaltyPointsFact(Base):
    """Each points movement counted once, by its ledger transaction (`points_earned`: kind `earned`,
    `points_redeemed`: kind `redeemed`)."""

    __tablename__ = "loyalty_points_facts"
    __table_args__ = (Index("ix_loyalty_points_facts_customer", "customer_id"),)

    transaction_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(36))
    origin_customer_id: Mapped[str] = mapped_column(String(36), index=True, default=recorded_for)
    program_id: Mapped[str] = mapped_column(String(40))
    kind: Mapped[str] = mapped_column(String(10))
    points: Mapped[int] = mapped_column(BigInteger)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime())


class RegistrationFact(Base):
    """Each customer's own registration (`customer_registered`): a survivor's `registered_at` is the
    earliest of the registrations merged into it, and an unmerge gives each its own back."""

    __tablename__ = "registration_facts"

    origin_customer_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(36), index=True)
    registered_at: Mapped[datetime] = mapped_column(UTCDateTime())


class MergedCustomer(Base):
    """Customers merged into another: facts arriving later under the absorbed id go to the survivor. An
    unmerge deletes the restored customer's row (customers merged into it before stay pointing at it)."""

    __tablename__ = "merged_customers"

    customer_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    merged_into: Mapped[str] = mapped_column(String(36))
