"""Events published by the loyalty service."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar

from pydantic import Field

from shared.events.envelope import EventPayload, Topic

POINTS = Topic(
    name="crm.loyalty.points",
    owner="loyalty",
    description="Movements of members' points: earned, redeemed, expired. Key: customer id.",
)


class PointsEarned(EventPayload):
    """A member earned points (integer points), e.g. for a purchase."""

    event_type: ClassVar[str] = "crm.loyalty.points_earned"
    topic: ClassVar[Topic] = POINTS

    customer_id: str
    transaction_id: str = Field(description="The ledger transaction that credited the points")
    points: int = Field(ge=1)
    reason: str = Field(examples=["purchase"])
    reference: str | None = Field(default=None, description="What earned them, e.g. the purchase id")
    balance_after: int
    occurred_at: datetime
    program_id: str | None = Field(
        default=None, description="The program (absent from older events: default)"
    )
    pending: bool = Field(default=False, description="Held until the return window passes, not yet spendable")
    qualifying: int = Field(default=0, ge=0, description="Tier-qualifying points earned with them")


MEMBERS = Topic(
    name="crm.loyalty.members",
    owner="loyalty",
    description="Program membership: enrolment, tier changes and warnings, referrals. Key: customer id.",
)
REWARDS = Topic(
    name="crm.loyalty.rewards",
    owner="loyalty",
    description="Rewards redeemed (confirmed redemptions, with voucher codes). Key: customer id.",
)


class PointsDeducted(EventPayload):
    """Points were taken back from a member: a refund's clawback, a staff adjustment or a reversal."""

    event_type: ClassVar[str] = "crm.loyalty.points_deducted"
    topic: ClassVar[Topic] = POINTS

    customer_id: str
    program_id: str
    transaction_id: str
    points: int = Field(ge=1, description="Points taken back (from pending and available together)")
    reason: str = Field(examples=["refund"])
    reference: str | None = Field(default=None, description="E.g. the refund id")
    uncollected: int = Field(default=0, ge=0, description="Owed points the negative-balance policy forgave")
    balance_after: int
    occurred_at: datetime


class PointsRedeemed(EventPayload):
    """A member spent points (a confirmed reward redemption or a redemption at a partner)."""

    event_type: ClassVar[str] = "crm.loyalty.points_redeemed"
    topic: ClassVar[Topic] = POINTS

    customer_id: str
    program_id: str
    transaction_id: str
    points: int = Field(ge=1)
    reward_id: str | None = None
    reference: str | None = None
    balance_after: int
    occurred_at: datetime


class PointsExpired(EventPayload):
    """A member's points expired by the program's policy (a ledger transaction of its own)."""

    event_type: ClassVar[str] = "crm.loyalty.points_expired"
    topic: ClassVar[Topic] = POINTS

    customer_id: str
    program_id: str
    transaction_id: str
    points: int = Field(ge=1)
    balance_after: int
    occurred_at: datetime


class PointsExpiringSoon(EventPayload):
    """A reminder: some of a member's points expire soon (sent once per lot and notice window)."""

    event_type: ClassVar[str] = "crm.loyalty.points_expiring_soon"
    topic: ClassVar[Topic] = POINTS

    customer_id: str
    program_id: str
    points: int = Field(ge=1)
    expires_at: datetime
    occurred_at: datetime


class MemberEnrolled(EventPayload):
    """A customer joined a loyalty program and got a card."""

    event_type: ClassVar[str] = "crm.loyalty.member_enrolled"
    topic: ClassVar[Topic] = MEMBERS

    customer_id: str
    program_id: str
    member_id: str
    card_number: str
    referred_by_customer_id: str | None = None
    enrolled_at: datetime


class TierChanged(EventPayload):
    """A member moved to another tier (upgrades at once; downgrades at the end of a period)."""

    event_type: ClassVar[str] = "crm.loyalty.tier_changed"
    topic: ClassVar[Topic] = MEMBERS

    customer_id: str
    program_id: str
    member_id: str
    from_tier: str | None
    to_tier: str | None
    direction: str = Field(examples=["upgrade"], description="upgrade or downgrade")
    changed_at: datetime


class TierDowngradeWarning(EventPayload):
    """A member will drop a tier at the end of the period unless they qualify again in time."""

    event_type: ClassVar[str] = "crm.loyalty.tier_downgrade_warning"
    topic: ClassVar[Topic] = MEMBERS

    customer_id: str
    program_id: str
    member_id: str
    current_tier: str
    expected_tier: str | None
    review_at: datetime
    missing_qualifying: int = Field(ge=0, description="Qualifying points (or spend) still needed to stay")
    occurred_at: datetime


class ReferralCompleted(EventPayload):
    """A referred customer qualified (e.g. made a first purchase): both sides were rewarded."""

    event_type: ClassVar[str] = "crm.loyalty.referral_completed"
    topic: ClassVar[Topic] = MEMBERS

    customer_id: str = Field(description="The referrer")
    referred_customer_id: str
    program_id: str
    completed_at: datetime


class RewardRedeemed(EventPayload):
    """A member's reward redemption was confirmed: points spent, voucher issued if any."""

    event_type: ClassVar[str] = "crm.loyalty.reward_redeemed"
    topic: ClassVar[Topic] = REWARDS

    customer_id: str
    program_id: str
    redemption_id: str
    reward_id: str
    reward_kind: str = Field(examples=["voucher"])
    points: int = Field(ge=0)
    cash_minor: int = Field(default=0, ge=0, description="Money paid on top (points + money), minor units")
    currency: str | None = None
    voucher_code: str | None = None
    redeemed_at: datetime
