"""Satisfaction rules: NPS categories and score, the overall score over rated attributes, the split by
group, performance against expectation, and the catalogue the API accepts."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.interactions.surveys import domain
from services.interactions.surveys.domain import AttributeGroup, NpsCategory, Score
from services.interactions.surveys.schemas import AttributeScores, SurveyCreate
from services.interactions.surveys.service import summary


class TestNpsCategory:
    @pytest.mark.parametrize(
        ("score", "category"),
        [
            (0, "detractor"),
            (6, "detractor"),
            (7, "passive"),
            (8, "passive"),
            (9, "promoter"),
            (10, "promoter"),
        ],
    )
    def test_the_bands(self, score: int, category: str) -> None:
        assert domain.nps_category(score) == NpsCategory(category)

    @pytest.mark.parametrize("score", [-1, 11])
    def test_outside_the_scale_is_refused(self, score: int) -> None:
        with pytest.raises(ValueError, match="0 to 10"):
            domain.nps_category(score)


class TestNetPromoterScore:
    def test_percent_promoters_minus_percent_detractors(self) -> None:
        # 5 promoters, 3 passives, 2 detractors out of 10: 50 % − 20 %.
        assert domain.nps_of([10, 9, 9, 10, 9, 7, 8, 8, 0, 6]) == 30.0

    def test_the_extremes(self) -> None:
        assert domain.nps_of([9, 10]) == 100.0
        assert domain.nps_of([0, 6, 3]) == -100.0
        assert domain.nps_of([7, 8]) == 0.0

    def test_nobody_answered_has_no_score(self) -> None:
        assert domain.nps_of([]) is None
        assert domain.net_promoter_score(0, 0, 0) is None

    def test_from_counts(self) -> None:
        assert domain.net_promoter_score(promoters=2, detractors=1, responses=4) == 25.0
        with pytest.raises(ValueError, match="part of the responses"):
            domain.net_promoter_score(promoters=3, detractors=2, responses=4)


class TestOverall:
    def test_the_sum_over_rated_attributes_out_of_five_each(self) -> None:
        total = domain.overall({"courtesy": 5, "competence": 4, "price": 2})
        assert total == Score(11, 15)
        assert total is not None
        assert round(total.share, 2) == 73.33

    def test_attributes_not_rated_do_not_lower_the_score(self) -> None:
        assert domain.overall({"cleanliness": 5}) == Score(5, 5)

    def test_nothing_rated_has_no_overall(self) -> None:
        assert domain.overall({}) is None

    def test_every_attribute_at_best(self) -> None:
        assert domain.overall(dict.fromkeys(domain.CATALOGUE, 5)) == Score(35, 35)

    @pytest.mark.parametrize(
        ("ratings", "message"), [({"smell": 3}, "unknown attribute"), ({"price": 6}, "1 to 5")]
    )
    def test_unknown_attributes_and_values_off_the_scale_are_refused(
        self, ratings: dict[str, int], message: str
    ) -> None:
        with pytest.raises(ValueError, match=message):
            domain.overall(ratings)

    def test_split_by_group(self) -> None:
        groups = domain.by_group({"courtesy": 5, "competence": 3, "variety": 4, "comfort": 2})
        assert groups == {
            AttributeGroup.PEOPLE: Score(8, 10),
            AttributeGroup.PRODUCT: Score(4, 5),
            AttributeGroup.PREMISES: Score(2, 5),
        }
        assert sum(s.score for s in groups.values()) == 14  # the groups add up to the overall score


class TestPerformanceAgainstExpectation:
    def test_the_gap_is_performance_minus_expectation(self) -> None:
        gaps = domain.gaps({"courtesy": 5, "price": 2, "quality": 4}, {"courtesy": 4, "price": 4})
        assert gaps == {"courtesy": 1, "price": -2}  # quality had no expectation


class TestTheCatalogue:
    def test_groups_as_the_domain_defines_them(self) -> None:
        grouped: dict[AttributeGroup, list[str]] = {}
        for name, group in domain.CATALOGUE.items():
            grouped.setdefault(group, []).append(name)
        assert grouped == {
            AttributeGroup.PEOPLE: ["courtesy", "competence"],
            AttributeGroup.PRODUCT: ["quality", "price", "variety"],
            AttributeGroup.PREMISES: ["cleanliness", "comfort"],
        }

    def test_the_api_accepts_exactly_the_catalogue(self) -> None:
        assert list(AttributeScores.model_fields) == list(domain.CATALOGUE)
        assert set(domain.DESCRIPTIONS) == set(domain.CATALOGUE)

    def test_rated_keeps_only_what_was_given(self) -> None:
        scores = AttributeScores.model_validate({"price": 3, "courtesy": 5, "comfort": None})
        assert scores.rated() == {"courtesy": 5, "price": 3}

    def test_an_unknown_attribute_is_located_under_its_name(self) -> None:
        with pytest.raises(ValidationError) as caught:
            SurveyCreate.model_validate({"customer_id": "c", "channel": "web", "ratings": {"smell": 3}})
        assert [e["loc"] for e in caught.value.errors()] == [("ratings", "smell")]


class TestTimelineSummary:
    def test_it_shows_the_scores_given(self) -> None:
        assert summary(4, 6, Score(11, 15)) == "Survey answered: CSAT 4/5, NPS 6 (detractor), overall 11/15"
        assert summary(None, 10, None) == "Survey answered: NPS 10 (promoter)"
