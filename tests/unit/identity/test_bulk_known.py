"""`bulk._Known`, the in-memory view a run is decided against: the candidates' records it hands
to scoring, in order and within the limit the one-by-one path's query has."""

from __future__ import annotations

from services.identity.bulk import Stats, _Known
from services.identity.matching import MatchRecord


def _known(records: dict[str, int]) -> _Known:
    known = _Known(cap=10, stats=Stats())
    for customer_id, count in records.items():
        for i in range(count):
            known.add(customer_id, MatchRecord(f"{customer_id}{i}"), (), (), new_customer=True)
    return known


def test_records_of_candidates_in_order_cut_at_the_limit() -> None:
    known = _known({"a": 2, "b": 3, "c": 1})
    groups = known.records_of(["a", "x", "b", "c"], limit=4)  # x: no records
    assert [(c, [r.id for r in views]) for c, views in groups] == [("a", ["a0", "a1"]), ("b", ["b0", "b1"])]
    assert (known.stats.pairs_scored, known.stats.record_limit_hits) == (4, 1)


def test_records_of_within_the_limit_are_all_given() -> None:
    known = _known({"a": 2, "b": 3})
    groups = known.records_of(["b", "a"], limit=5)
    assert [(c, len(views)) for c, views in groups] == [("b", 3), ("a", 2)]
    assert (known.stats.pairs_scored, known.stats.record_limit_hits) == (5, 0)
    # A limit falling exactly between two customers leaves the next one out whole.
    assert [c for c, _ in known.records_of(["b", "a"], limit=3)] == ["b"]
