"""Loyalty's HTTP schemas. Points are whole numbers (integers) everywhere."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from services.loyalty.domain import MAX_DAYS, MAX_POSTING, json_integers_in_range
from services.loyalty.models import LedgerTransaction, Member, Program


class ProgramIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{1,39}$", examples=["gold-club"])
    name: str = Field(min_length=1, max_length=120, examples=["Gold Club"])
    timezone: str = Field(
        default="UTC", description="Where month and year ends fall", examples=["Europe/Paris"]
    )
    currency: str | None = Field(
        default=None,
        pattern=r"^[A-Z]{3}$",
        description="Only purchases in it earn (null: any)",
        examples=["EUR"],
    )
    points_per_unit: int = Field(
        default=1, ge=0, le=10_000, description="Base points per whole currency unit"
    )
    pending_days: int = Field(
        default=0, ge=0, le=365, description="Days earned points are held (return window)"
    )
    expiry_policy: Literal["never", "after_days", "end_of_month", "end_of_year", "inactivity"] = "never"
    expiry_period: int | None = Field(
        default=None,
        ge=0,
        le=MAX_DAYS,
        description="after_days/inactivity: days; end_of_month: months ahead; end_of_year: years ahead",
        examples=[12],
    )
    negative_policy: Literal["never", "within_limit"] = Field(
        default="never", description="Whether a refund after spending may take the balance below zero"
    )
    negative_limit: int = Field(
        default=0, ge=0, le=MAX_POSTING, description="How far below zero (within_limit)"
    )
    expiring_notice_days: int = Field(default=30, ge=0, le=365)
    settings: Annotated[dict[str, Any], AfterValidator(json_integers_in_range)] = Field(
        default_factory=dict,
        description="auto_enrol (bool): buyers join at their first purchase",
        examples=[{"auto_enrol": True}],
    )


class ProgramOut(BaseModel):
    id: str
    name: str
    status: str
    timezone: str
    currency: str | None
    points_per_unit: int
    pending_days: int
    expiry_policy: str
    expiry_period: int | None
    negative_policy: str
    negative_limit: int
    expiring_notice_days: int
    tiers: list[dict[str, Any]]
    settings: dict[str, Any]
    version: int
    created_at: datetime

    @classmethod
    def of(cls, program: Program) -> ProgramOut:
        return cls.model_validate(program, from_attributes=True)


class EnrolIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    customer_id: str = Field(min_length=1, max_length=36, examples=["0b6f3c5e-8a47-4c1a-9d8e-3f2a1b4c5d6e"])
    referral_code: str | None = Field(
        default=None,
        min_length=4,
        max_length=16,
        description="A member's code: the referrer",
        examples=["K7QX2MZP"],
    )
    birth_date: date | None = Field(
        default=None,
        description="For the birthday bonus (granted on the day, in the program's time zone)",
        examples=["1990-04-17"],
    )


class Balances(BaseModel):
    available: int = Field(description="Spendable now", examples=[1250])
    pending: int = Field(description="Earned, held until the return window passes", examples=[99])
    reserved: int = Field(description="Held by redemptions awaiting confirmation", examples=[0])
    qualifying: int = Field(description="Tier-qualifying points (not spendable)", examples=[2400])


class MemberOut(BaseModel):
    id: str
    program_id: str
    customer_id: str
    card_number: str
    card_status: str
    status: str
    tier: str | None
    tier_since: datetime | None
    referral_code: str
    household_id: str | None
    enrolled_at: datetime
    last_activity_at: datetime
    version: int
    balances: Balances

    @classmethod
    def of(cls, member: Member, balances: dict[str, int]) -> MemberOut:
        return cls(
            **{k: getattr(member, k) for k in cls.model_fields if k != "balances"},
            balances=Balances(**balances),
        )


class MemberPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: Literal["active", "suspended", "closed"] | None = Field(default=None, examples=["suspended"])
    card_status: Literal["active", "blocked", "lost"] | None = Field(
        default=None,
        description="`lost` issues a new card number at once (the old one stops working)",
        examples=["lost"],
    )


class BalanceOut(BaseModel):
    customer_id: str
    program_id: str = Field(examples=["default"])
    points: int = Field(description="Spendable points (integer)", examples=[120])
    pending: int = 0
    reserved: int = 0
    qualifying: int = 0
    tier: str | None = None


class LedgerLineOut(BaseModel):
    transaction_id: str
    kind: str = Field(examples=["earn"])
    reference: str = Field(examples=["purchase:default:3f0c..."])
    points: int = Field(description="Signed change to the member's available points", examples=[99])
    pending: int = Field(default=0, description="Signed change to pending points")
    reason: str | None = None
    actor: str | None = None
    reverses_id: str | None = None
    created_at: datetime


class AdjustIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    points: int = Field(
        ge=-MAX_POSTING,
        le=MAX_POSTING,
        description="Signed whole points: positive credits, negative debits",
        examples=[500],
    )
    reason: str = Field(min_length=3, max_length=500, examples=["Goodwill: late delivery"])


class ReverseIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=3, max_length=500, examples=["Posted twice by mistake"])


class TransferIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    to_member_id: str = Field(examples=["5d0b2a7e-..."])
    points: int = Field(gt=0, le=MAX_POSTING, examples=[300])
    reason: str | None = Field(default=None, max_length=500)


class TransactionOut(BaseModel):
    id: str
    program_id: str | None
    kind: str
    reference: str
    member_id: str | None
    customer_id: str | None
    reason: str | None
    actor: str | None
    reverses_id: str | None
    details: dict[str, Any]
    created_at: datetime
    entries: list[EntryOut] = Field(default_factory=list)

    @classmethod
    def of(cls, tx: LedgerTransaction, entries: list[EntryOut]) -> TransactionOut:
        return cls(
            **{k: getattr(tx, k) for k in cls.model_fields if k != "entries"},
            entries=entries,
        )


class EntryOut(BaseModel):
    account_id: str = Field(examples=["m:5d0b…:available"])
    amount: int


class CheckOut(BaseModel):
    ok: bool
    accounts: int
    transactions: int
    total: int = Field(description="Sum of every entry ever posted: always 0")
    drifted_accounts: list[dict[str, Any]]
    unbalanced_transactions: list[dict[str, Any]]
    lot_mismatches: list[dict[str, Any]]


TransactionOut.model_rebuild()
