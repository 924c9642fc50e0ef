"""Rewards' HTTP schemas. Points and money are whole numbers (money in minor units): a fractional or
negative amount is refused at the door."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal, Self

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from services.loyalty.domain import MAX_MINOR, MAX_POSTING
from services.loyalty.rewards.models import Partner, Redemption, Reward

RewardKind = Literal["discount", "voucher", "free_product", "upgrade", "experience", "partner"]


class Blackout(BaseModel):
    """Dates (inclusive, in the program's time zone) on which the reward cannot be redeemed."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    from_: date = Field(alias="from", examples=["2026-12-20"])
    until: date = Field(examples=["2027-01-02"])

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.until < self.from_:
            raise ValueError("until must not be before from")
        return self


class RewardIn(BaseModel):
    """A catalogue entry as staff define it. Everything a member pays or must accept is here and is
    shown before redemption: points, money on top, fees, terms, limits, dates."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "kind": "voucher",
                    "name": "10 EUR voucher",
                    "description": "Spend it in any store or online.",
                    "cost_points": 1000,
                    "stock": 500,
                    "per_member_limit": 2,
                    "limit_period": "month",
                    "blackout_dates": [{"from": "2026-12-24", "until": "2026-12-26"}],
                    "eligible_tiers": [],
                    "terms": "Valid 90 days from issue. Not exchangeable for cash.",
                }
            ]
        },
    )

    kind: RewardKind = Field(description="What the member gets")
    name: str = Field(min_length=1, max_length=200, examples=["10 EUR voucher"])
    description: str | None = Field(default=None, max_length=4000)
    cost_points: int = Field(
        strict=True, ge=1, le=MAX_POSTING, description="Points to pay (whole points)", examples=[1000]
    )
    cash_minor: int = Field(
        default=0,
        strict=True,
        ge=0,
        le=MAX_MINOR,
        description="Money on top of the points (points + money), minor units",
    )
    currency: str | None = Field(default=None, pattern=r"^[A-Z]{3}$", examples=["EUR"])
    fees_minor: int = Field(
        default=0,
        strict=True,
        ge=0,
        le=MAX_MINOR,
        description="Fees charged on redemption (shown up front), minor units",
    )
    terms: str | None = Field(default=None, max_length=4000, description="Terms shown before redemption")
    stock: int | None = Field(
        default=None, strict=True, ge=0, le=MAX_MINOR, description="Units left; null: unlimited"
    )
    per_member_limit: int | None = Field(default=None, strict=True, ge=1, le=1_000_000)
    limit_period: Literal["lifetime", "day", "week", "month", "year"] = Field(
        default="lifetime", description="Calendar period of the per-member limit (program time zone)"
    )
    available_from: AwareDatetime | None = None
    available_until: AwareDatetime | None = None
    blackout_dates: list[Blackout] = Field(default_factory=list, max_length=366)
    eligible_tiers: list[str] = Field(default_factory=list, description="Empty: every member")
    eligible_segments: list[str] = Field(
        default_factory=list, description="Segment ids; empty: every member (else a member of any of them)"
    )
    partner_id: str | None = Field(
        default=None, description="The redemption partner honouring it (required for kind `partner`)"
    )
    status: Literal["draft", "active", "retired"] = "active"

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if (self.cash_minor or self.fees_minor) and self.currency is None:
            raise ValueError("currency is required when the reward costs money or has fees")
        if self.available_from and self.available_until and self.available_until <= self.available_from:
            raise ValueError("available_until must be after available_from")
        if self.kind == "partner" and self.partner_id is None:
            raise ValueError("a partner reward names its partner_id")
        return self

    def values(self) -> dict[str, Any]:
        out = self.model_dump(exclude={"blackout_dates"})
        out["blackout_dates"] = [
            {"from": b.from_.isoformat(), "until": b.until.isoformat()} for b in self.blackout_dates
        ]
        return out


class RewardOut(BaseModel):
    id: str
    program_id: str
    kind: str
    name: str
    description: str | None
    cost_points: int
    cash_minor: int
    currency: str | None
    fees_minor: int
    terms: str | None
    stock: int | None = Field(description="Units left (null: unlimited)")
    reserved: int = Field(description="Units held by reservations awaiting confirmation")
    available: int | None = Field(description="Units that can still be reserved (null: unlimited)")
    per_member_limit: int | None
    limit_period: str
    available_from: datetime | None
    available_until: datetime | None
    blackout_dates: list[dict[str, Any]]
    eligible_tiers: list[str]
    eligible_segments: list[str]
    partner_id: str | None
    status: str
    version: int
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, reward: Reward) -> RewardOut:
        values = {k: getattr(reward, k) for k in cls.model_fields if k != "available"}
        available = None if reward.stock is None else max(reward.stock - reward.reserved, 0)
        return cls(**values, available=available)


class ReasonOut(BaseModel):
    rule: str = Field(examples=["reward.blackout"])
    detail: str = Field(examples=["not redeemable from 2026-12-24 to 2026-12-26 (blackout dates)"])


class QuoteOut(BaseModel):
    """Everything the member pays and accepts, before they redeem: no second bill."""

    reward_id: str
    member_id: str
    points: int = Field(description="Points to pay", examples=[1000])
    cash_minor: int = Field(description="Money on top of the points, minor units", examples=[0])
    fees_minor: int = Field(description="Fees, minor units", examples=[0])
    total_cash_minor: int = Field(description="cash_minor + fees_minor: all the money there is to pay")
    currency: str | None
    terms: str | None
    restrictions: list[str] = Field(examples=[["at most 2 per member per month"]])
    available_points: int = Field(description="The member's spendable points now")
    balance_after: int = Field(description="Points left after redeeming")
    hold_minutes: int = Field(description="How long a reservation holds the points before it expires")
    redeemable: bool
    reasons: list[ReasonOut] = Field(description="Why it cannot be redeemed now (empty if it can)")


class CatalogueItem(BaseModel):
    reward: RewardOut
    redeemable: bool
    reasons: list[ReasonOut]
    restrictions: list[str]
    total_cash_minor: int


class CatalogueOut(BaseModel):
    program_id: str
    member_id: str
    available_points: int
    tier: str | None
    items: list[CatalogueItem]


class RedeemIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"reward_id": "9b8c6a0e-4f5d-4c1b-8a2e-1d3f5a7b9c0e"}]},
    )

    reward_id: str = Field(min_length=1, max_length=36)
    confirm: bool = Field(
        default=False,
        description="Redeem now: reserve and confirm in one request (the quote was shown before)",
    )
    payment_reference: str | None = Field(
        default=None,
        max_length=120,
        description="The payment of the money part and fees (points + money rewards), when confirming",
    )


class ConfirmIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"payment_reference": "pay_123"}]}
    )

    payment_reference: str | None = Field(
        default=None, max_length=120, description="Required when the reward costs money or has fees"
    )


class CancelIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"reason": "changed my mind"}]})

    reason: str | None = Field(default=None, max_length=500)


class RedemptionOut(BaseModel):
    id: str
    reward_id: str
    member_id: str
    program_id: str
    partner_id: str | None
    points: int
    cash_minor: int
    fees_minor: int
    currency: str | None
    payment_reference: str | None
    status: str = Field(examples=["reserved"], description="reserved | confirmed | cancelled | expired")
    reservation_transaction_id: str
    confirm_transaction_id: str | None
    cancel_transaction_id: str | None
    voucher_code: str | None = Field(examples=["K7QX-2MZP-9RTA"])
    reserved_at: datetime
    expires_at: datetime = Field(
        description="The reservation expires (points return) unless confirmed by then"
    )
    confirmed_at: datetime | None
    cancelled_at: datetime | None
    reason: str | None
    version: int

    @classmethod
    def of(cls, redemption: Redemption) -> RedemptionOut:
        return cls.model_validate(redemption, from_attributes=True)


class PartnerIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"id": "air-lines", "name": "Air Lines", "kind": "both"}]},
    )

    id: str | None = Field(
        default=None, pattern=r"^[a-z0-9][a-z0-9_-]{1,39}$", description="Chosen id (default: generated)"
    )
    name: str = Field(min_length=1, max_length=200)
    kind: Literal["accrual", "redemption", "both"] = Field(
        description="accrual: members earn with it; redemption: members spend with it"
    )
    status: Literal["active", "suspended", "closed"] = "active"


class PartnerOut(BaseModel):
    id: str
    program_id: str
    name: str
    kind: str
    status: str
    version: int
    created_at: datetime
    issued: int = Field(description="Points the partner issued to members (its liability)")
    redeemed: int = Field(description="Points members spent on the partner's rewards")

    @classmethod
    def of(cls, partner: Partner, issued: int, redeemed: int) -> PartnerOut:
        values = {k: getattr(partner, k) for k in cls.model_fields if k not in ("issued", "redeemed")}
        return cls(**values, issued=issued, redeemed=redeemed)


class AccrualIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"member_id": "5d0b2a7e-…", "points": 750, "reference": "flight:AB123:2026-11-02"}]
        },
    )

    member_id: str = Field(min_length=1, max_length=36)
    points: int = Field(
        strict=True, ge=1, le=MAX_POSTING, description="Whole points the partner grants", examples=[750]
    )
    reference: str = Field(
        min_length=1, max_length=120, description="The partner's id of the activity: credited once"
    )
    reason: str | None = Field(default=None, max_length=500)
