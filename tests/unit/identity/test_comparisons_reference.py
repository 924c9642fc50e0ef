"""The comparisons written for speed (parts compared only where the outcome depends on them,
derived values kept on the profile, similarity cut-offs) give exactly the levels of their plain
definitions, kept here as the reference."""

from __future__ import annotations

import datetime as dt
import gc

from hypothesis import given, settings
from hypothesis import strategies as st
from rapidfuzz import fuzz
from rapidfuzz.distance import Hamming, JaroWinkler

from services.identity.matching import comparisons
from services.identity.matching.comparisons import ELSE, _Profile
from services.identity.matching.record import MatchRecord


def _similar(x: str, y: str) -> float:
    return float(JaroWinkler.similarity(x, y))


def reference_address(pa: _Profile, pb: _Profile) -> str | None:
    postcode = None if pa.postcode is None or pb.postcode is None else comparisons._postcode_outcome(pa, pb)
    same_city = None
    if pa.city is not None and pb.city is not None:
        same_city = pa.city == pb.city or _similar(pa.city, pb.city) >= 0.90
    same_street = None
    if pa.street is not None and pb.street is not None:
        na, nb = pa.street_number, pb.street_number
        numbers_agree = na is None or nb is None or na == nb
        words_a, words_b = pa.street_words, pb.street_words
        if not words_a or not words_b:
            ratio = 100.0 if pa.street == pb.street else 0.0
        else:
            ratio = float(fuzz.token_set_ratio(words_a, words_b))
        same_street = ratio >= 90 and numbers_agree
    if postcode is None and same_city is None and same_street is None:
        return None
    locality = postcode == "exact" if postcode is not None else same_city
    if same_street and locality:
        return "exact"
    if postcode == "exact":
        return "postcode"
    if same_street:
        return "street"
    if postcode == "prefix" or same_city:
        return "area"
    return ELSE


def reference_birth_date(pa: _Profile, pb: _Profile) -> str | None:
    da, db = pa.birth_date, pb.birth_date
    if da is None or db is None:
        return None
    if da == db:
        return "exact"
    if da.year == db.year and da.day == db.month and da.month == db.day:
        return "transposed"
    if (da.year == db.year and da.month == db.month) or abs((da - db).days) <= 31:
        return "close"
    if Hamming.distance(da.strftime("%Y%m%d"), db.strftime("%Y%m%d"), score_cutoff=1) <= 1:
        return "close"
    return ELSE


def reference_email_similar(pa: _Profile, pb: _Profile) -> bool:
    return _similar(pa.local, pb.local) >= 0.90


few = st.sampled_from
postcodes = st.none() | few(["SW1A 1AA", "SW1A 2AA", "SW1B 1AA", "28001", "28002", "2800", "E1 6AN"])
cities = st.none() | few(["london", "londom", "madrid", "madird", "paris", "leeds"])
streets = st.none() | few(
    ["12 high street", "14 high street", "high street", "12 hihg street", "12 main road", "1a high st",
     "calle mayor 3", "3 calle mayor", "main road", "12", "12 high street west"]
)  # fmt: skip
dates = st.none() | st.dates(min_value=dt.date(1900, 1, 1), max_value=dt.date(2030, 12, 31))
close_dates = st.none() | few(
    [dt.date(1980, 3, 4), dt.date(1980, 4, 3), dt.date(1980, 3, 28), dt.date(1981, 3, 4), dt.date(1980, 2, 4),
     dt.date(1908, 3, 4), dt.date(1980, 5, 4), dt.date(1990, 3, 4)]
)  # fmt: skip
emails = st.none() | few(
    ["maria.garcia@gmail.com", "maria.garcia@yahoo.es", "maria.garcai@gmail.com", "mgarcia@gmail.com",
     "john1980@outlook.com", "john1908@outlook.com", "jon1980@outlook.com"]
)  # fmt: skip


@st.composite
def records(draw: st.DrawFn) -> MatchRecord:
    return MatchRecord(
        id="r",
        given_name=draw(st.none() | few(["maria", "john", "jon"])),
        family_name=draw(st.none() | few(["garcia", "smith"])),
        email=draw(emails),
        birth_date=draw(st.one_of(dates, close_dates)),
        postcode=draw(postcodes),
        city=draw(cities),
        street=draw(streets),
    )


@settings(max_examples=3_000)
@given(records(), records())
def test_the_fast_comparisons_give_the_reference_levels(a: MatchRecord, b: MatchRecord) -> None:
    pa, pb = _Profile(a), _Profile(b)
    assert comparisons._address(pa, pb) == reference_address(pa, pb)
    assert comparisons._birth_date(pa, pb) == reference_birth_date(pa, pb)
    if a.email is not None and b.email is not None:
        assert (comparisons._similar(pa.local, pb.local, 0.90) >= 0.90) == reference_email_similar(pa, pb)
    assert pa.shown(a) == {key: comparisons.shown_values(key, a) for key in comparisons.LEVELS}


def test_a_profile_holds_no_reference_to_its_record() -> None:
    """The record keeps its profile (`derived`): a reference back would make every scored record a
    cycle, freed only by the cyclic collector (which a bulk import keeps off its heap)."""
    record = MatchRecord(id="r", given_name="maria", street="12 high street", postcode="SW1A 1AA")
    profile = comparisons._profile(record)
    assert record.derived is profile
    profile.shown(record)
    assert not any(ref is record for ref in gc.get_referents(profile))
