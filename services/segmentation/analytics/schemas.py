"""HTTP schemas of the segmentation analytics (see the package docstring for the definitions)."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum

from pydantic import BaseModel, Field

from services.segmentation.analytics.periods import Interval


class AnalyticsFormat(StrEnum):
    JSON = "json"
    PNG = "png"
    SVG = "svg"


class Window(BaseModel):
    since: datetime = Field(
        description="Start of the range (inclusive, UTC)", examples=["2026-01-01T00:00:00Z"]
    )
    until: datetime = Field(
        description="End of the range (exclusive, UTC)", examples=["2027-01-01T00:00:00Z"]
    )


class Cohort(BaseModel):
    month: date = Field(
        description="Month of the cohort's first purchases (its first day)", examples=["2026-03-01"]
    )
    customers: int = Field(
        description="Customers whose first purchase ever fell in that month", examples=[120]
    )
    active: list[int | None] = Field(
        description="For k = 0…months: customers of the cohort who bought in month k after the cohort's "
        "month (k = 0 is the month itself); null for months that have not begun yet",
        examples=[[120, 31, 22, None]],
    )
    retention: list[float | None] = Field(
        description="`active[k] / customers` (0–1, 4 decimals); null where `active` is null",
        examples=[[1.0, 0.2583, 0.1833, None]],
    )


class CohortTable(Window):
    months: int = Field(description="How many months after the first are followed", examples=[12])
    cohorts: list[Cohort] = Field(description="Every month of the range, oldest first (empty ones too)")


class RetentionPeriod(BaseModel):
    start: date = Field(description="First day of the period (UTC)", examples=["2026-11-01"])
    end: date = Field(description="First day after the period (UTC)", examples=["2026-12-01"])
    buyers: int = Field(description="Customers who bought in the period", examples=[310])
    previous_buyers: int = Field(description="Customers who bought in the period before", examples=[290])
    retained: int = Field(description="Customers who bought in the period before and again in this one")
    retention_rate: float | None = Field(
        description="`retained / previous_buyers` (0–1); null when nobody bought in the period before",
        examples=[0.4138],
    )


class RepeatShare(BaseModel):
    customers: int = Field(description="Customers with at least one purchase in the range", examples=[800])
    repeat_customers: int = Field(description="Of them, those with at least two purchases in the range")
    share: float | None = Field(description="`repeat_customers / customers`; null without customers")


class ChurnBasis(StrEnum):
    CUSTOMER_VALUE = "customer_value.active"
    LAPSE_DAYS = "lapse_days"


class Churn(BaseModel):
    basis: ChurnBasis = Field(
        description="`customer_value.active` (the value model's verdict, current) when that table is "
        "there with rows and `until` is now or later; otherwise `lapse_days`"
    )
    as_of: datetime = Field(description="The moment the churn is measured at")
    lapse_days: int = Field(description="Days without a purchase after which a customer counts as churned")
    customers: int = Field(description="Customers with at least one purchase (before `as_of`)")
    churned: int = Field(description="Of them, the churned ones")
    rate: float | None = Field(description="`churned / customers`; null without customers", examples=[0.21])


class RetentionReport(Window):
    interval: Interval
    periods: list[RetentionPeriod]
    repeat_customers: RepeatShare
    churn: Churn


class MixSide(BaseModel):
    customers: int = Field(description="Distinct customers", examples=[40])
    purchases: int = Field(description="Purchases", examples=[46])
    revenue: dict[str, int] = Field(
        description="Gross purchase amounts per currency, in minor units (currencies are never added)",
        examples=[{"EUR": 183400}],
    )


class MixPeriod(BaseModel):
    start: date = Field(description="First day of the period (UTC)", examples=["2026-11-01"])
    end: date = Field(description="First day after the period (UTC)", examples=["2026-12-01"])
    new: MixSide = Field(description="First-time buyers: their first purchase ever is in this period")
    returning: MixSide = Field(description="Returning buyers: they had bought in an earlier period")


class MixReport(Window):
    interval: Interval
    currencies: list[str] = Field(
        description="Currencies with revenue in the range", examples=[["EUR", "USD"]]
    )
    periods: list[MixPeriod]


class TierCurrency(BaseModel):
    currency: str = Field(examples=["EUR"])
    purchases: int = Field(description="Purchases in the range", examples=[210])
    purchased_minor: int = Field(description="Their total, minor units", examples=[1520000])
    refunds: int = Field(description="Refunds in the range", examples=[7])
    refunded_minor: int = Field(description="Their total, minor units", examples=[31000])
    net_minor: int = Field(description="`purchased_minor − refunded_minor`", examples=[1489000])


class TierRevenue(BaseModel):
    tier: str = Field(description="`top`, `high`, `medium`, `rest` or `unclassified` (no value row yet)")
    customers: int = Field(description="Distinct customers of the tier who bought in the range")
    by_currency: list[TierCurrency] = Field(description="One entry per currency, never added together")


class TierReport(Window):
    available: bool = Field(description="False when the value tables are not there (then `tiers` is empty)")
    explanation: str | None = Field(default=None, description="Why the figures are missing, when they are")
    currencies: list[str]
    tiers: list[TierRevenue] = Field(description="top, high, medium, rest, then unclassified (when present)")


class ReasonCount(BaseModel):
    reason: str = Field(examples=["price"])
    defections: int = Field(description="Defections recorded with this reason in the range", examples=[12])
    customers: int = Field(description="Distinct customers among them", examples=[12])
    share: float = Field(description="`defections / total` (0–1)", examples=[0.3])


class DefectionReport(Window):
    available: bool = Field(description="False when the `defections` table is not there")
    explanation: str | None = Field(default=None, description="Why the figures are missing, when they are")
    total: int = Field(description="Defections recorded in the range")
    reasons: list[ReasonCount] = Field(description="Most frequent first")
