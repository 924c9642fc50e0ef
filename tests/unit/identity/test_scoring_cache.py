"""`score` precomputes per model and per record: the results must not depend on those caches."""

from __future__ import annotations

import dataclasses
import datetime as dt

from services.identity.matching import MatchModel, MatchRecord, blocking_keys, score
from services.identity.matching.comparisons import street_level

ANA = MatchRecord(
    "a",
    given_name="ana",
    family_name="garcia lopez",
    email="ana.garcia@example.com",
    phone="+34600111222",
    birth_date=dt.date(1980, 5, 17),
    postcode="28001",
    city="madrid",
    street="calle mayor 5",
    gender="female",
)
ANITA = MatchRecord(
    "b",
    given_name="anita",
    family_name="garcia",
    email="anagarcia@example.org",
    phone="+34600111223",
    birth_date=dt.date(1980, 5, 17),
    postcode="28001",
    city="madrid",
    street="calle mayor 5",
    gender="female",
)


def fresh(model: MatchModel) -> MatchModel:
    return MatchModel.from_json(model.to_json())


def test_changing_a_level_after_scoring_changes_the_score() -> None:
    model = MatchModel.default()
    before = score(ANA, ANITA, model)
    model.comparisons["birth_date"].levels[0].m = 0.5
    after = score(ANA, ANITA, model)
    assert after != before
    assert after == score(ANA, ANITA, fresh(model))


def test_replacing_priors_or_term_frequencies_after_scoring_is_seen() -> None:
    model = MatchModel.default()
    score(ANA, ANITA, model)
    model.prior = 1e-4
    assert score(ANA, ANITA, model) == score(ANA, ANITA, fresh(model))
    model.term_frequencies = {"given_name": {"ana": 0.2}, "family_name": {"garcia": 0.05}}
    same_name = MatchRecord("c", given_name="ana", family_name="garcia lopez")
    assert score(ANA, same_name, model) == score(ANA, same_name, fresh(model))
    assert (
        score(ANA, same_name, model).evidence[0].weight
        < score(ANA, same_name, fresh(MatchModel.default())).evidence[0].weight
    )


def test_equal_records_built_separately_score_the_same() -> None:
    model = MatchModel.default()
    copy = MatchRecord(**{f.name: getattr(ANITA, f.name) for f in dataclasses.fields(ANITA) if f.init})
    assert copy is not ANITA
    assert score(ANA, copy, model) == score(ANA, ANITA, model)
    assert blocking_keys(copy) == blocking_keys(ANITA)


def test_same_street_words_are_a_full_street_match() -> None:
    other = MatchRecord("d", street="calle mayor 7")
    assert street_level(ANA, ANITA) == "ts90"
    assert street_level(ANA, other) == "ts70"
