"""Loyalty's domain rules, free of I/O: how many points a purchase earns, and balanced postings."""

from __future__ import annotations

from dataclasses import dataclass

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
