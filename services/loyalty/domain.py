"""Loyalty's domain rules, free of I/O: points for an amount, balanced postings, expiry dates, the
errors that say which rule refused a movement."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from shared.errors import Conflict, DomainError

# ISO 4217 currencies whose minor unit is not 1/100 (the rest have two decimals).
_MINOR_UNIT_EXPONENT = {
    "BIF": 0,
    "CLP": 0,
    "DJF": 0,
    "GNF": 0,
    "ISK": 0,
    "JPY": 0,
    "KMF": 0,
    "KRW": 0,
    "PYG": 0,
    "RWF": 0,
    "UGX": 0,
    "UYI": 0,
    "VND": 0,
    "VUV": 0,
    "XAF": 0,
    "XOF": 0,
    "XPF": 0,
    "BHD": 3,
    "IQD": 3,
    "JOD": 3,
    "KWD": 3,
    "LYD": 3,
    "OMR": 3,
    "TND": 3,
}

EXPIRY_POLICIES = ("never", "after_days", "end_of_month", "end_of_year", "inactivity")
NEGATIVE_POLICIES = ("never", "within_limit")


def minor_units_per_major(currency: str) -> int:
    return int(10 ** _MINOR_UNIT_EXPONENT.get(currency.upper(), 2))


def base_points(total_minor: int, currency: str, points_per_unit: int = 1) -> int:
    """Points for an amount: `points_per_unit` per whole currency unit, fractions dropped."""
    if total_minor < 0:
        raise ValueError("amount must not be negative")
    return (total_minor // minor_units_per_major(currency)) * points_per_unit


@dataclass(frozen=True, slots=True)
class Posting:
    """One entry of a ledger transaction: a signed amount of points on an account."""

    account_id: str
    amount: int


class UnbalancedTransaction(ValueError):
    pass


def balanced(postings: list[Posting]) -> list[Posting]:
    """Double entry: every transaction's postings sum to zero, in whole points."""
    if not postings:
        raise UnbalancedTransaction("a transaction needs postings")
    if any(not isinstance(p.amount, int) or isinstance(p.amount, bool) for p in postings):
        raise UnbalancedTransaction("points are whole numbers")
    if sum(p.amount for p in postings) != 0:
        raise UnbalancedTransaction(f"postings sum to {sum(p.amount for p in postings)}, not 0")
    return postings


def clawback_due(earned: int, purchase_total_minor: int, refunded_total_minor: int, clawed: int) -> int:
    """Points still to take back after refunds totalling `refunded_total_minor` of a purchase that
    earned `earned`: proportional and cumulative, so partial refunds adding up to the whole purchase
    take back exactly what it earned (never more, whatever the rounding of each part)."""
    if purchase_total_minor <= 0 or earned <= 0:
        return 0
    refunded = min(max(refunded_total_minor, 0), purchase_total_minor)
    target = earned * refunded // purchase_total_minor
    return max(target - clawed, 0)


def expiry_date(policy: str, period: int | None, earned_at: datetime, timezone: str) -> datetime | None:
    """When points earned at `earned_at` expire under a program's policy (None: never, or only on
    inactivity). Month and year ends are the program's local midnight, returned as an aware datetime.

    - after_days: `period` days after earning;
    - end_of_month: the end of the month `period` months after the month of earning (0: this month);
    - end_of_year: the end of the calendar year `period` years after the year of earning."""
    if policy in ("never", "inactivity"):
        return None
    if policy == "after_days":
        return earned_at + timedelta(days=period or 0)
    zone = ZoneInfo(timezone)
    local = earned_at.astimezone(zone)
    if policy == "end_of_month":
        months = local.year * 12 + (local.month - 1) + (period or 0) + 1  # the month after the last one
        year, month = divmod(months, 12)
        return datetime(year, month + 1, 1, tzinfo=zone)
    if policy == "end_of_year":
        return datetime(local.year + (period or 0) + 1, 1, 1, tzinfo=zone)
    raise ValueError(f"unknown expiry policy {policy!r}")


class InsufficientPoints(Conflict):
    """A movement would take an account below what the program allows."""

    slug = "insufficient-points"
    title = "Not enough points"

    def __init__(self, *, available: int, requested: int, rule: str = "balance") -> None:
        super().__init__(
            f"{requested} points requested but only {available} available",
            available=available,
            requested=requested,
            rule=rule,
        )


class LoyaltyRuleRefused(DomainError):
    """A program rule refused the request; `rule` names it (e.g. `reward.blackout`)."""

    status = 422
    slug = "loyalty-rule"
    title = "Refused by a program rule"

    def __init__(self, rule: str, detail: str, **extensions: Any) -> None:
        super().__init__(detail, rule=rule, **extensions)


# Upper bounds of what one request may ask for: far above any real posting or price, far below the
# 64-bit integers the database and the JSON encoder hold (a bigger number is a 422, not a crash).
MAX_POSTING = 1_000_000_000  # points in one posting
MAX_MINOR = 10**15  # money in minor units (10 trillion in a 2-decimal currency)
MAX_DAYS = 36_500  # a period in days (or months, or years): a century
_INT64 = 2**63


def json_integers_in_range(value: Any) -> Any:
    """Validator of free-form JSON fields (rule definitions, program settings): every integer in them
    fits a signed 64-bit integer, as the JSON encoder and the database need."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, int) and not -_INT64 <= item < _INT64:
            raise ValueError("numbers must be between -2^63 and 2^63 - 1")
        if isinstance(item, dict):
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return value
