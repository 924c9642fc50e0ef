"""Loyalty's pure rules: points per whole currency unit, balanced double entry."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.loyalty.domain import Posting, UnbalancedTransaction, balanced, base_points


@pytest.mark.parametrize(
    ("total_minor", "currency", "points"),
    [
        (9998, "EUR", 99),
        (99, "EUR", 0),
        (100, "USD", 1),
        (1500, "JPY", 1500),
        (12345, "KWD", 12),
        (0, "EUR", 0),
    ],
)
def test_one_point_per_whole_currency_unit(total_minor: int, currency: str, points: int) -> None:
    assert base_points(total_minor, currency) == points


def test_negative_amounts_are_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        base_points(-1, "EUR")


@given(st.integers(min_value=0, max_value=10**12))
def test_points_never_exceed_the_amount_in_major_units(total_minor: int) -> None:
    assert base_points(total_minor, "EUR") * 100 <= total_minor < (base_points(total_minor, "EUR") + 1) * 100


def test_a_transaction_must_balance() -> None:
    assert balanced([Posting("a", 5), Posting("b", -5)])
    with pytest.raises(UnbalancedTransaction, match="sum to 1"):
        balanced([Posting("a", 5), Posting("b", -4)])
    with pytest.raises(UnbalancedTransaction, match="whole"):
        balanced([Posting("a", 0.5), Posting("b", -0.5)])  # type: ignore[arg-type]
    with pytest.raises(UnbalancedTransaction, match="needs postings"):
        balanced([])
