"""`score_reaches`: drops only pairs whose score is below the floor, and returns `score`'s result
for every other pair."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.identity.matching import MatchModel, MatchRecord, score
from services.identity.matching.comparisons import _PROFILE_FUNCTIONS, PRESENT, _profile
from services.identity.matching.scoring import log_odds, probability, score_reaches

given_names = st.sampled_from(["ana", "anna", "maria", "mario", "bob", "robert", "lucia", "zoe"])
family_names = st.sampled_from(["garcia", "garsia", "garcia lopez", "smith", "zubizarreta", "ruiz"])
records = st.builds(
    MatchRecord,
    id=st.just("x"),
    given_name=st.none() | given_names,
    family_name=st.none() | family_names,
    organisation_name=st.none() | st.sampled_from(["acme", "acme sl", "globex"]),
    email=st.none() | st.sampled_from(["ana@gmail.com", "anna@gmail.com", "maria.garcia@x.es"]),
    phone=st.none() | st.sampled_from(["+34612345678", "+34612345679", "+44612345678"]),
    birth_date=st.none() | st.dates(dt.date(1980, 1, 1), dt.date(1980, 3, 31)),
    postcode=st.none() | st.sampled_from(["28001", "28002", "SW1A1AA"]),
    city=st.none() | st.sampled_from(["madrid", "london"]),
    street=st.none() | st.sampled_from(["calle mayor 5", "calle mayor 7", "high street 1"]),
    national_id=st.none() | st.sampled_from(["12345678Z", "87654321X"]),
    gender=st.none() | st.sampled_from(["f", "m"]),
)


def _model(rare: bool, related: bool) -> MatchModel:
    model = MatchModel.default()
    if rare:  # a value's own u far below its level's: the bound must still hold
        model.term_frequencies = {
            "given_name": {"zoe": 1e-9, "maria": 0.2},
            "family_name": {"zubizarreta": 1e-9, "garcia": 0.05},
        }
    if not related:
        model = MatchModel(prior=model.prior, comparisons=model.comparisons, related_prior=0.0)
    return model


@settings(max_examples=600, deadline=None)
@given(records, records, st.floats(-60, 60), st.floats(-3, 3), st.booleans(), st.booleans(), st.booleans())
def test_only_pairs_below_the_floor_are_dropped(
    a: MatchRecord, b: MatchRecord, anywhere: float, near: float, close: bool, rare: bool, related: bool
) -> None:
    model = _model(rare, related)
    full = score(a, b, model)
    # A floor just around the pair's own score is where a bound that is too tight shows.
    floor = full.score + near if close else anywhere
    reached = score_reaches(a, b, model, floor)
    if reached is None:
        assert full.score < floor
    else:
        assert reached == full
    if full.score < floor - 40:  # far below: dropped, or the bound would be useless
        assert reached is None


@settings(max_examples=400, deadline=None)
@given(records, records)
def test_a_comparison_of_a_value_one_record_lacks_is_null(a: MatchRecord, b: MatchRecord) -> None:
    """`PRESENT`, which lets the bound leave a comparison out, says exactly when a level is possible."""
    pa, pb = _profile(a), _profile(b)
    for key, function in _PROFILE_FUNCTIONS.items():
        if not PRESENT[key](pa):
            assert function(pa, pb) is None, key
            assert function(pb, pa) is None, key
        else:  # and what it has, compared with itself, is never null
            assert function(pa, pa) is not None, key


def test_most_non_matches_are_dropped_early_and_matches_kept() -> None:
    model = MatchModel.default()
    ana = MatchRecord("a", given_name="ana", family_name="garcia", email="ana@gmail.com",
                      phone="+34612345678", birth_date=dt.date(1980, 1, 5), postcode="28001")  # fmt: skip
    other = MatchRecord("b", given_name="lucia", family_name="garcia", email="lucia@x.es",
                        phone="+34699999999", birth_date=dt.date(1975, 6, 1), postcode="28001")  # fmt: skip
    same = MatchRecord("c", given_name="ana", family_name="garcia", email="ana@gmail.com",
                       birth_date=dt.date(1980, 1, 5))  # fmt: skip
    floor = log_odds(0.8)
    assert score(ana, other, model).score < floor
    assert score_reaches(ana, other, model, floor) is None
    assert score_reaches(ana, same, model, floor) == score(ana, same, model)
    assert probability(log_odds(0.8)) == pytest.approx(0.8)


def test_term_frequencies_changed_in_place_are_read_at_each_call() -> None:
    model = MatchModel.default()
    model.term_frequencies = {"given_name": {"zoe": 0.5}, "family_name": {"quintanilla": 0.5}}
    a = MatchRecord("a", given_name="zoe", family_name="quintanilla")
    b = MatchRecord("b", given_name="zoe", family_name="quintanilla")
    common = score(a, b, model).score
    assert score_reaches(a, b, model, common + 1.0) is None
    model.term_frequencies["given_name"]["zoe"] = 1e-9  # now very rare names: strong evidence,
    model.term_frequencies["family_name"]["quintanilla"] = 1e-9  # more than any level's table says
    rare = score(a, b, model)
    assert rare.score > common + 15.0
    for floor in (rare.score - 1.0, rare.score - 0.01, common + 1.0):
        assert score_reaches(a, b, model, floor) == rare
    assert score_reaches(a, b, model, rare.score + 0.01) is None
