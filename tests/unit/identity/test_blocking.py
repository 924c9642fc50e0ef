"""Blocking keys: a duplicate keeps at least one key through realistic errors; strangers don't."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

import pytest

from services.identity.matching import MatchRecord, blocking_keys, candidate_pairs
from services.identity.matching.blocking import MAX_KEY_LENGTH
from tests.unit.identity.synthetic import generate, pair_key

ANA = MatchRecord(
    id="a",
    given_name="ana",
    family_name="garcia lopez",
    email="ana.garcia@gmail.com",
    phone="+34612345678",
    birth_date=dt.date(1985, 3, 7),
    postcode="28001",
    city="madrid",
    street="calle mayor 5",
    national_id="12345678Z",
    gender="f",
)
ROBERT = MatchRecord(
    id="r",
    given_name="robert",
    family_name="smith",
    birth_date=dt.date(1970, 1, 2),
    postcode="SW1A1AA",
    email="rsmith@example.com",
)


def shares_a_key(a: MatchRecord, b: MatchRecord) -> bool:
    return bool(blocking_keys(a) & blocking_keys(b))


class TestDuplicatesStayCandidates:
    @pytest.mark.parametrize(
        "variant",
        [
            # a typo in the family name, new e-mail and phone, moved
            replace(
                ANA, id="b", family_name="garzia lopez", email=None, phone=None, postcode="08001", street=None
            ),
            # given and family names swapped, nothing else but the birth date
            MatchRecord(id="b", given_name="garcia lopez", family_name="ana", birth_date=dt.date(1985, 3, 7)),
            # second surname dropped, moved, no birth date
            MatchRecord(id="b", given_name="ana", family_name="garcia", postcode="28001"),
            # only the national id left
            MatchRecord(id="b", national_id="12345678Z"),
            # a married name, same birth date
            replace(ANA, id="b", family_name="perez", email=None, phone=None),
        ],
    )
    def test_ana_variants(self, variant: MatchRecord) -> None:
        assert shares_a_key(ANA, variant)

    def test_nickname_with_new_address_and_email(self) -> None:
        bob = replace(ROBERT, id="b", given_name="bob", postcode="M11AA", email="bob.smith@gmail.com")
        assert shares_a_key(ROBERT, bob)

    def test_nickname_outside_the_table_that_starts_alike(self) -> None:
        daniel = MatchRecord(id="d", given_name="daniel", family_name="schmidt", email="d@x.de")
        dani = MatchRecord(id="e", given_name="dani", family_name="schmidt", email="dani@y.de")
        assert shares_a_key(daniel, dani)

    def test_swapped_names_without_birth_date(self) -> None:
        swapped = MatchRecord(id="s", given_name="smith", family_name="robert", postcode="N11AA")
        assert shares_a_key(ROBERT, swapped)


class TestStrangers:
    def test_different_people_share_no_key(self) -> None:
        assert not shares_a_key(ANA, ROBERT)

    def test_a_common_surname_alone_is_no_key(self) -> None:
        one = MatchRecord(id="1", given_name="maria", family_name="garcia", birth_date=dt.date(1990, 1, 1))
        other = MatchRecord(id="2", given_name="lucia", family_name="garcia", birth_date=dt.date(1970, 6, 6))
        assert not shares_a_key(one, other)


class TestKeys:
    def test_at_most_120_characters_even_for_long_values(self) -> None:
        long = replace(ANA, email="a" * 64 + "@" + "b" * 60 + ".example.com", organisation_name="x" * 300)
        assert all(len(key) <= MAX_KEY_LENGTH for key in blocking_keys(long))

    def test_an_empty_record_has_none(self) -> None:
        assert blocking_keys(MatchRecord(id="x")) == set()

    def test_organisations_key_on_their_name_without_legal_form(self) -> None:
        acme = MatchRecord(id="1", organisation_name="acme iberica sl")
        acme_sa = MatchRecord(id="2", organisation_name="acme iberica sa")
        assert shares_a_key(acme, acme_sa)


def test_on_synthetic_data_few_candidates_and_few_duplicates_lost() -> None:
    data = generate(households=300, seed=3)
    pairs = candidate_pairs(data.records)
    found = {pair_key(data.records[i].id, data.records[j].id) for i, j in pairs}
    truth = data.true_pairs()
    assert len(truth & found) / len(truth) >= 0.95
    assert len(pairs) <= 10 * len(data.records)
