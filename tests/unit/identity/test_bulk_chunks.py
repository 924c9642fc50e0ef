"""How an import is cut into chunks: every row once, in order, no chunk over the size, and the
ramps at both ends that keep the processes busy while the first chunk is prepared and the last
written."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from services.identity.bulk import _chunk_sizes, _cut


@given(st.integers(min_value=0, max_value=200_000), st.integers(min_value=1, max_value=20_000))
def test_every_row_once_in_order_and_no_chunk_over_the_size(n: int, size: int) -> None:
    sizes = _chunk_sizes(n, size)
    assert sum(sizes) == n
    assert all(0 < s <= size for s in sizes)
    rows = list(range(n))
    assert [r for chunk in _cut(rows, sizes) for r in chunk] == rows


def test_a_large_import_ramps_up_and_down() -> None:
    sizes = _chunk_sizes(100_000, 8_000)
    assert sizes[:4] == [1_000, 2_000, 4_000, 8_000]
    assert sizes[-3:] == [4_000, 2_000, 1_000]
    assert sizes.count(8_000) == 10


def test_a_small_import_is_cut_evenly() -> None:
    assert _chunk_sizes(8_000, 8_000) == [8_000]
    assert _chunk_sizes(8_001, 8_000) == [4_001, 4_000]
    assert _chunk_sizes(20_000, 8_000) == [6_667, 6_667, 6_666]
