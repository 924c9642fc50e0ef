"""HTTP schemas of earning rules, the dry run, bonus events and tiers. Points are whole numbers;
multiplier factors are rationals of two integers (never floats)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field

from services.loyalty.domain import MAX_MINOR, json_integers_in_range
from services.loyalty.earning import Earning
from services.loyalty.rules.models import EarningRule

RuleKind = Literal["multiplier", "bonus_points", "event_bonus", "cap"]

RULE_EXAMPLES: dict[str, dict[str, Any]] = {
    "tier_multiplier": {
        "summary": "×3/2 for gold members in stores",
        "value": {
            "name": "Gold in store",
            "kind": "multiplier",
            "priority": 10,
            "definition": {
                "factor": {"numerator": 3, "denominator": 2},
                "conditions": {"tiers": ["gold"], "channels": ["store"]},
            },
        },
    },
    "category_bonus": {
        "summary": "50 points per pair of shoes",
        "value": {
            "name": "Shoe bonus",
            "kind": "bonus_points",
            "definition": {"points": 50, "per": "unit", "conditions": {"categories": ["shoes"]}},
            "valid_from": "2026-12-01T00:00:00Z",
            "valid_until": "2027-01-01T00:00:00Z",
        },
    },
    "referral": {
        "summary": "Referral bonus for the referrer, at most 5 a month",
        "value": {
            "name": "Refer a friend",
            "kind": "event_bonus",
            "definition": {
                "event": "referral_referrer",
                "points": 500,
                "limit": {"count": 5, "period": "month"},
            },
        },
    },
    "cap": {
        "summary": "At most 5,000 points a month",
        "value": {
            "name": "Monthly cap",
            "kind": "cap",
            "definition": {"max_points": 5000, "period": "month", "applies_to": ["purchase", "bonus"]},
        },
    },
}


class RuleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=120, examples=["Gold in store"])
    kind: RuleKind = Field(description="multiplier | bonus_points | event_bonus | cap")
    priority: int = Field(
        default=100, ge=0, le=100_000, description="Lower runs first within its stage (ties: name, then id)"
    )
    definition: Annotated[dict[str, Any], AfterValidator(json_integers_in_range)] = Field(
        description=(
            "By kind — multiplier: `factor` {numerator, denominator} and `conditions`; bonus_points: "
            "`points`, `per` (purchase | line | unit) and `conditions`; event_bonus: `event` (enrolment, "
            "birthday, referral_referrer, referral_referee, survey_answered, custom:<name>), `points`, "
            "`conditions` (tiers, segments) and optional `limit` {count, period}; cap: `max_points`, "
            "`period` (day | week | month | year) and `applies_to` (purchase, bonus). Conditions: `tiers`, "
            "`segments`, `channels`, `categories`, `skus` (lists: any of) and `min_total_minor`."
        ),
        examples=[{"factor": {"numerator": 3, "denominator": 2}, "conditions": {"tiers": ["gold"]}}],
    )
    valid_from: AwareDatetime | None = Field(default=None, description="In force from (inclusive)")
    valid_until: AwareDatetime | None = Field(default=None, description="In force until (exclusive)")
    active: bool = True


class RuleOut(BaseModel):
    id: str
    program_id: str
    name: str
    kind: str
    priority: int
    definition: dict[str, Any]
    valid_from: datetime | None
    valid_until: datetime | None
    active: bool
    version: int
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, rule: EarningRule) -> RuleOut:
        return cls.model_validate(rule, from_attributes=True)


class LineIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sku: str = Field(min_length=1, max_length=64, examples=["SKU-1001"])
    category: str | None = Field(default=None, max_length=64, examples=["shoes"])
    quantity: int = Field(ge=1, le=1_000_000, examples=[2])
    unit_price_minor: int = Field(ge=0, le=MAX_MINOR, examples=[4999])


class PurchaseIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    currency: str = Field(pattern=r"^[A-Z]{3}$", examples=["EUR"])
    total_minor: int = Field(ge=0, le=MAX_MINOR, description="Order total in minor units", examples=[9998])
    channel: str = Field(default="store", min_length=1, max_length=20, examples=["store"])
    occurred_at: AwareDatetime | None = Field(default=None, description="Defaults to now")
    lines: list[LineIn] = Field(default_factory=list)


class DryRunIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    customer_id: str | None = Field(default=None, max_length=36, description="Evaluate as this customer")
    member_id: str | None = Field(default=None, max_length=36, description="Evaluate as this member")
    purchase: PurchaseIn


class FiredRuleOut(BaseModel):
    rule_id: str = Field(examples=["base"])
    name: str = Field(examples=["Base rate"])
    points: int = Field(description="Whole points this rule added (negative for a cap)", examples=[99])
    detail: str = Field(examples=["1 point(s) per whole EUR"])


class DryRunOut(BaseModel):
    program_id: str
    member_id: str | None
    customer_id: str | None
    tier: str | None
    points: int = Field(description="What the purchase would earn", examples=[148])
    qualifying: int = Field(description="Tier-qualifying points it would add", examples=[99])
    rules: list[FiredRuleOut] = Field(description="Rules that fired, in evaluation order")

    @staticmethod
    def fired(earning: Earning) -> list[FiredRuleOut]:
        return [
            FiredRuleOut(rule_id=f.rule_id, name=f.name, points=f.points, detail=f.detail)
            for f in earning.fired
        ]


class BonusEventIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    event: str = Field(
        pattern=r"^[a-z0-9][a-z0-9_.-]{0,39}$",
        description="The custom event's name (rules name it `custom:<event>`)",
        examples=["app_download"],
    )
    reference: str = Field(
        min_length=1,
        max_length=80,
        description="What makes it unique: granted once per reference",
        examples=["install-7f3a"],
    )


class BonusEventOut(BaseModel):
    event: str = Field(examples=["custom:app_download"])
    reference: str = Field(
        description="The ledger reference of the bonus", examples=["bonus:default:custom:…"]
    )
    granted: bool = Field(description="Points were posted by this call")
    duplicate: bool = Field(description="The reference was already rewarded: nothing new was posted")
    points: int
    transaction_id: str | None
    rules: list[FiredRuleOut] = Field(default_factory=list)


class TiersIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tiers: Annotated[list[dict[str, Any]], AfterValidator(json_integers_in_range)] = Field(
        description=(
            "Lowest first. Each: `name`, `threshold` (> 0), `measure` (qualifying_points | spend_minor), "
            '`window` ({"kind": "rolling_days", "days": N} | {"kind": "calendar_year"}), `benefits` '
            "(`earn_multiplier` {numerator, denominator}, `reward_access` [..], `perks` [..])."
        ),
        examples=[
            [
                {
                    "name": "silver",
                    "threshold": 1000,
                    "measure": "qualifying_points",
                    "window": {"kind": "rolling_days", "days": 365},
                    "benefits": {"earn_multiplier": {"numerator": 5, "denominator": 4}},
                },
                {
                    "name": "gold",
                    "threshold": 5000,
                    "measure": "qualifying_points",
                    "window": {"kind": "rolling_days", "days": 365},
                    "benefits": {
                        "earn_multiplier": {"numerator": 3, "denominator": 2},
                        "reward_access": ["lounge"],
                        "perks": ["priority service line"],
                    },
                },
            ]
        ],
    )
    grace_days: int = Field(
        default=0, ge=0, le=366, description="Days after a period's end before its review"
    )
    warning_days: int = Field(default=30, ge=0, le=366, description="Days before a review to warn members")


class TiersOut(BaseModel):
    program_id: str
    tiers: list[dict[str, Any]]
    grace_days: int
    warning_days: int
    version: int


class TierProgressOut(BaseModel):
    tier: str
    measure: str = Field(examples=["qualifying_points"])
    value: int = Field(description="The member's measure over the tier's window")
    threshold: int
    missing: int = Field(description="Still needed to qualify (0 when qualified)")
    qualified: bool
    window_start: datetime
    window_end: datetime


class TierStatusOut(BaseModel):
    program_id: str
    member_id: str
    tier: str | None
    tier_since: datetime | None
    benefits: dict[str, Any]
    qualified_tier: str | None = Field(description="The tier the member's measures qualify for now")
    next_tier: TierProgressOut | None = Field(description="The tier above theirs and what it still takes")
    progress: list[TierProgressOut]
    period_end: datetime | None = Field(description="End of the current tier period")
    review_at: datetime | None = Field(description="When the tier is next reviewed (period end + grace)")
    expected_tier: str | None = Field(
        description="The tier the member would keep if reviewed on current measures"
    )
    will_downgrade: bool
