"""`shared.db.padded`: a batch padded to a power of two by repeating its last item — the same items, so an
IN list or an INSERT … ON CONFLICT DO NOTHING means the same, in one of a few statement texts."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.db import padded

pytestmark = pytest.mark.unit


@given(st.lists(st.integers(), max_size=1100))
def test_padded_is_the_items_then_repeats_of_the_last_up_to_a_power_of_two(items: list[int]) -> None:
    out = padded(items)
    assert out[: len(items)] == items
    if not items:
        assert out == []
        return
    n = len(out)
    assert n & (n - 1) == 0  # a power of two …
    assert len(items) <= n < 2 * len(items)  # … the smallest one that holds them
    assert set(out[len(items) :]) <= {items[-1]}


def test_few_lengths_for_many_sizes() -> None:
    assert {len(padded(list(range(n)))) for n in range(1, 501)} == {1, 2, 4, 8, 16, 32, 64, 128, 256, 512}
