"""The match model: weights, validation, JSON."""

from __future__ import annotations

import json
import math

import pytest

from services.identity.matching import LEVELS, Comparison, ComparisonLevel, MatchModel
from services.identity.matching.model import DEFAULT_COMPARISONS


def test_weight_is_log2_of_m_over_u() -> None:
    assert ComparisonLevel("exact", m=0.9, u=0.009).weight == pytest.approx(math.log2(100))
    assert ComparisonLevel("else", m=0.05, u=0.95).weight < 0


def test_related_falls_back_to_u() -> None:
    assert ComparisonLevel("same", m=0.9, u=0.5).related == 0.5
    assert ComparisonLevel("same", m=0.9, u=0.5, r=0.7).related == 0.7


class TestDefault:
    def test_every_comparison_has_its_levels_and_probabilities_sum_to_one(self) -> None:
        model = MatchModel.default()
        assert tuple(model.comparisons) == DEFAULT_COMPARISONS
        for key, comparison in model.comparisons.items():
            assert tuple(level.name for level in comparison.levels) == LEVELS[key]
            for attribute in ("m", "u", "related"):
                total = sum(getattr(level, attribute) for level in comparison.levels)
                assert total == pytest.approx(1.0, abs=1e-6), (key, attribute)

    def test_agreement_weighs_for_and_disagreement_against(self) -> None:
        for comparison in MatchModel.default().comparisons.values():
            assert comparison.levels[0].weight > 0
            assert comparison.levels[-1].weight < 0

    def test_address_parts_can_be_chosen_instead(self) -> None:
        model = MatchModel.default(["given_name", "postcode", "city", "street"])
        assert set(model.comparisons) == {"given_name", "postcode", "city", "street"}

    def test_with_register_sets_priors_for_its_size(self) -> None:
        model = MatchModel.default().with_register(10_000, duplicate_share=0.2)
        assert model.prior == pytest.approx(0.2 * 10_000 / 2 / (10_000 * 9_999 / 2))


class TestValidation:
    def test_unknown_comparison(self) -> None:
        with pytest.raises(ValueError, match="no comparison function"):
            MatchModel(prior=1e-4, comparisons={"shoe_size": Comparison("shoe_size", [])})

    def test_levels_must_match_the_comparison_function(self) -> None:
        with pytest.raises(ValueError, match="must have levels"):
            MatchModel(
                prior=1e-4, comparisons={"gender": Comparison("gender", [ComparisonLevel("same", 0.9, 0.5)])}
            )

    @pytest.mark.parametrize(("prior", "related"), [(0.0, 0.0), (1.0, 0.0), (0.5, 0.6)])
    def test_priors(self, prior: float, related: float) -> None:
        with pytest.raises(ValueError, match="prior"):
            MatchModel(prior=prior, comparisons={}, related_prior=related)

    def test_unknown_level_name(self) -> None:
        with pytest.raises(KeyError):
            MatchModel.default().comparisons["gender"].level("maybe")


def test_term_frequencies_only_for_names() -> None:
    with pytest.raises(ValueError, match="term frequencies"):
        MatchModel(prior=1e-4, comparisons={}, term_frequencies={"email": {"a@b.c": 0.1}})


def test_json_round_trip() -> None:
    model = MatchModel.default()
    model.term_frequencies = {"family_name": {"garcia": 0.03}}
    text = json.dumps(model.to_json())
    again = MatchModel.from_json(json.loads(text))
    assert again == model
    assert again.to_json() == model.to_json()
