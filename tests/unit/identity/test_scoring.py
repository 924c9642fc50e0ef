"""Scoring: comparison levels, the orderings that matter, explanations that add up."""

from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.identity.matching import MatchModel, MatchRecord, best_match, score
from services.identity.matching.comparisons import (
    address_level,
    birth_date_level,
    email_level,
    family_name_level,
    given_name_level,
    national_id_level,
    organisation_name_level,
    phone_level,
    postcode_level,
    street_level,
)

MODEL = MatchModel.default()

MARIA = MatchRecord(
    id="maria",
    given_name="maria",
    family_name="garcia",
    email="garcia.family@gmail.com",
    phone="+34612345678",
    birth_date=dt.date(1961, 4, 12),
    postcode="28001",
    city="madrid",
    street="calle mayor 5",
    gender="f",
)


def r(**values: object) -> MatchRecord:
    return MatchRecord(id=str(values.pop("id", "x")), **values)  # type: ignore[arg-type]


class TestLevels:
    @pytest.mark.parametrize(
        ("left", "right", "level"),
        [
            (r(given_name="bob"), r(given_name="robert"), "exact"),
            (r(given_name="pepe"), r(given_name="jose"), "exact"),
            (r(given_name="margaret"), r(given_name="margaert"), "close"),
            (r(given_name="ursula"), r(given_name="uosula"), "close"),
            (r(given_name="alex"), r(given_name="alexander"), "similar"),
            (r(given_name="j"), r(given_name="john"), "similar"),
            (r(given_name="ana"), r(given_name="lucia"), "else"),
            (r(given_name="ana", family_name="ruiz"), r(given_name="ruiz", family_name="ana"), "swapped"),
            (r(given_name="ana"), r(), None),
        ],
    )
    def test_given_name(self, left: MatchRecord, right: MatchRecord, level: str | None) -> None:
        assert given_name_level(left, right) == level

    @pytest.mark.parametrize(
        ("left", "right", "level"),
        [
            (r(family_name="garcia"), r(family_name="garcia"), "exact"),
            (r(family_name="rodriguez"), r(family_name="rodriguzz"), "close"),
            (r(family_name="garcia lopez"), r(family_name="lopez"), "token"),
            (r(family_name="smith"), r(family_name="jones"), "else"),
            # swapped names are counted once, by the given-name comparison
            (r(given_name="ana", family_name="ruiz"), r(given_name="ruiz", family_name="ana"), None),
        ],
    )
    def test_family_name(self, left: MatchRecord, right: MatchRecord, level: str | None) -> None:
        assert family_name_level(left, right) == level

    @pytest.mark.parametrize(
        ("left", "right", "level"),
        [
            ("zx81fan@gmail.com", "zx81fan@gmail.com", "exact"),
            ("zx81fan@gmail.com", "zx81fan@yahoo.com", "local"),
            ("zx81fan@gmail.com", "zx81fam@gmail.com", "jw90"),
            ("zx81fan@gmail.com", "qwerty99@gmail.com", "else"),
            # local parts built from the names say no more than the names
            ("maria.garcia@gmail.com", "maria.garcia@yahoo.com", None),
            ("maria.garcia@gmail.com", "maria.garcia7@gmail.com", None),
            # ...unless it is a slip of the keyboard in one mailbox
            ("maria.garcia@gmail.com", "maria.gracia@gmail.com", "jw90"),
        ],
    )
    def test_email(self, left: str, right: str, level: str | None) -> None:
        names = {"given_name": "maria", "family_name": "garcia"}
        assert email_level(r(email=left, **names), r(email=right, **names)) == level

    @pytest.mark.parametrize(
        ("left", "right", "level"),
        [
            ("+34612345678", "+34612345678", "exact"),
            ("+34612345678", "+44612345678", "last8"),  # a country code guessed differently
            ("+34612345678", "+34612345679", "typo"),
            ("+34612345678", "+34698765432", "else"),
        ],
    )
    def test_phone(self, left: str, right: str, level: str) -> None:
        assert phone_level(r(phone=left), r(phone=right)) == level

    @pytest.mark.parametrize(
        ("left", "right", "level"),
        [
            (dt.date(1985, 3, 7), dt.date(1985, 3, 7), "exact"),
            (dt.date(1985, 3, 7), dt.date(1985, 7, 3), "transposed"),
            (dt.date(1985, 3, 7), dt.date(1985, 3, 17), "close"),
            (dt.date(1985, 3, 7), dt.date(1986, 3, 7), "close"),
            (dt.date(1985, 3, 7), dt.date(1962, 11, 30), "else"),
        ],
    )
    def test_birth_date(self, left: dt.date, right: dt.date, level: str) -> None:
        assert birth_date_level(r(birth_date=left), r(birth_date=right)) == level

    def test_national_id(self) -> None:
        assert national_id_level(r(national_id="12345678Z"), r(national_id="12345678Z")) == "exact"
        assert national_id_level(r(national_id="12345678Z"), r(national_id="12345687Z")) == "typo"
        assert national_id_level(r(national_id="12345678Z"), r(national_id="87654321X")) == "else"

    def test_organisation_ignores_legal_forms(self) -> None:
        assert organisation_name_level(r(organisation_name="acme sl"), r(organisation_name="acme")) == "exact"

    def test_address_parts(self) -> None:
        home = r(postcode="28001", street="calle mayor 5", city="madrid")
        assert address_level(home, home) == "exact"
        assert address_level(home, r(postcode="28001", street="calle mayor 7")) == "postcode"  # a neighbour
        assert address_level(home, r(postcode="28010", street="calle mayor 5")) == "street"
        assert address_level(home, r(postcode="28099", city="madrid")) == "area"
        assert address_level(home, r(postcode="08001", street="gran via 1", city="barcelona")) == "else"
        assert address_level(home, r()) is None
        assert postcode_level(r(postcode="SW1A1AA"), r(postcode="SW1A2BB")) == "prefix"
        assert street_level(home, r(street="calle mayor 7")) == "ts70"


class TestOrderings:
    def test_exact_duplicate_over_typo_duplicate_over_relative_and_stranger(self) -> None:
        exact = score(MARIA, replace(MARIA, id="copy"), MODEL)
        typo = score(
            MARIA, replace(MARIA, id="typo", given_name="mraia", family_name="garcai", phone=None), MODEL
        )
        daughter = replace(
            MARIA, id="daughter", given_name="lucia", birth_date=dt.date(1990, 9, 1), phone=None
        )
        relative = score(MARIA, daughter, MODEL)
        stranger = score(
            MARIA,
            r(
                id="s",
                given_name="peter",
                family_name="smith",
                email="ps@x.com",
                birth_date=dt.date(1970, 1, 1),
            ),
            MODEL,
        )
        assert exact.score > typo.score > relative.score
        assert exact.probability > 0.999
        assert typo.probability > 0.99
        assert relative.probability < 0.05
        assert stranger.probability < 0.001

    def test_shared_family_email_with_other_given_name_and_birth_date_is_not_a_match(self) -> None:
        husband = MatchRecord(
            id="h",
            given_name="jose",
            family_name="garcia",
            email="garcia.family@gmail.com",
            birth_date=dt.date(1958, 12, 1),
            postcode="28001",
            street="calle mayor 5",
            city="madrid",
            gender="m",
        )
        result = score(MARIA, husband, MODEL)
        assert result.probability < 0.01
        assert result.evidence[-1].field == "related"
        assert result.evidence[-1].weight < -10

    def test_same_person_with_new_address_and_email_is_a_match(self) -> None:
        moved = replace(
            MARIA,
            id="moved",
            email="mgarcia61@hotmail.com",
            postcode="08001",
            city="barcelona",
            street="gran via 1",
        )
        assert score(MARIA, moved, MODEL).probability > 0.99

    def test_swapped_names_with_birth_date_and_phone_is_a_match(self) -> None:
        swapped = MatchRecord(
            id="sw", given_name="garcia", family_name="maria", birth_date=MARIA.birth_date, phone=MARIA.phone
        )
        assert score(MARIA, swapped, MODEL).probability > 0.99

    def test_namesakes_with_nothing_else_in_common_are_not(self) -> None:
        other = MatchRecord(
            id="o", given_name="maria", family_name="garcia", email="mg@yahoo.es", postcode="41001"
        )
        assert score(MARIA, other, MODEL).probability < 0.5


class TestExplanation:
    def test_weights_and_prior_add_up_to_the_score(self) -> None:
        result = score(MARIA, replace(MARIA, id="b", phone=None, given_name="mari"), MODEL)
        assert math.isclose(
            result.prior_weight + sum(e.weight for e in result.evidence), result.score, abs_tol=1e-9
        )
        assert math.isclose(result.probability, 1 / (1 + 2 ** (-result.score)))

    def test_missing_values_are_null_and_weigh_nothing(self) -> None:
        result = score(MARIA, MatchRecord(id="b", given_name="maria"), MODEL)
        by_field = {e.field: e for e in result.evidence}
        assert by_field["phone"].level == "null"
        assert by_field["phone"].weight == 0.0
        assert by_field["phone"].left == "+34612345678"
        assert by_field["phone"].right is None

    def test_json(self) -> None:
        data = json.loads(json.dumps(score(MARIA, replace(MARIA, id="b"), MODEL).to_json()))
        assert set(data) == {"score", "probability", "prior_weight", "evidence"}
        assert {"field", "level", "weight", "left", "right"} <= set(data["evidence"][0])


def test_a_common_name_agrees_for_less_than_a_rare_one() -> None:
    model = MatchModel.default()
    model.term_frequencies = {
        "family_name": {"garcia": 0.05, "zubizarreta": 0.0001},
        "given_name": {"maria": 0.1},
    }
    common = score(
        r(given_name="maria", family_name="garcia"), r(given_name="maria", family_name="garcia"), model
    )
    rare = score(
        r(given_name="maria", family_name="zubizarreta"),
        r(given_name="maria", family_name="zubizarreta"),
        model,
    )
    plain = score(r(given_name="ana", family_name="ruiz"), r(given_name="ana", family_name="ruiz"), model)
    assert common.score < plain.score < rare.score
    family = {e.field: e for e in common.evidence}["family_name"]
    assert family.weight == pytest.approx(math.log2(0.88 / 0.05))


class TestBestMatch:
    def test_picks_the_duplicate_and_skips_the_record_itself(self) -> None:
        duplicate = replace(MARIA, id="dup", phone=None)
        relative = replace(MARIA, id="rel", given_name="lucia", birth_date=dt.date(1992, 2, 2))
        found = best_match(MARIA, [MARIA, relative, duplicate], MODEL)
        assert found is not None
        assert found[0].id == "dup"

    def test_none_without_candidates(self) -> None:
        assert best_match(MARIA, [], MODEL) is None
        assert best_match(MARIA, [MARIA], MODEL) is None


names = st.sampled_from(["ana", "anna", "maria", "mario", "bob", "robert", "garcia", "garsia", "smith"])
records = st.builds(
    MatchRecord,
    id=st.just("x"),
    given_name=st.none() | names,
    family_name=st.none() | names,
    email=st.none()
    | st.sampled_from(["ana@gmail.com", "ana@yahoo.com", "anna@gmail.com", "maria.garcia@x.es"]),
    phone=st.none() | st.sampled_from(["+34612345678", "+34612345679", "+44612345678"]),
    birth_date=st.none() | st.dates(dt.date(1980, 1, 1), dt.date(1980, 12, 31)),
    postcode=st.none() | st.sampled_from(["28001", "28002", "SW1A1AA"]),
    street=st.none() | st.sampled_from(["calle mayor 5", "calle mayor 7"]),
)


@settings(max_examples=200)
@given(records, records)
def test_score_is_symmetric_and_a_probability(a: MatchRecord, b: MatchRecord) -> None:
    forward, backward = score(a, b, MODEL), score(b, a, MODEL)
    assert math.isclose(forward.score, backward.score, abs_tol=1e-9)
    assert 0.0 <= forward.probability <= 1.0
