"""Learning the model: u from random pairs, EM without labels, and reviewers' decisions."""

from __future__ import annotations

import datetime as dt
import random

import numpy as np
import pytest

from services.identity.matching import (
    Comparison,
    ComparisonLevel,
    MatchModel,
    MatchRecord,
    candidate_pairs,
    comparison_vectors,
    estimate_em,
    estimate_u,
    fit,
    score,
    tune_from_labels,
)
from tests.unit.identity.synthetic import Dataset, generate, pair_key


@pytest.fixture(scope="module")
def data() -> Dataset:
    return generate(households=500, seed=12)


def flattened(model: MatchModel, keep: float = 0.3) -> MatchModel:
    """`model` with its m probabilities mostly forgotten (70% uniform)."""
    comparisons = {
        key: Comparison(
            key,
            [
                ComparisonLevel(lv.name, keep * lv.m + (1 - keep) / len(c.levels), lv.u, lv.r)
                for lv in c.levels
            ],
        )
        for key, c in model.comparisons.items()
    }
    return MatchModel(prior=model.prior, comparisons=comparisons, related_prior=model.related_prior)


def f1_on_candidates(data: Dataset, model: MatchModel, threshold: float) -> float:
    records = data.records
    candidates = {pair_key(records[i].id, records[j].id): (i, j) for i, j in candidate_pairs(records)}
    predicted = {
        k for k, (i, j) in candidates.items() if score(records[i], records[j], model).probability >= threshold
    }
    reachable = data.true_pairs() & set(candidates)
    true_positives = len(predicted & reachable)
    precision = true_positives / len(predicted)
    recall = true_positives / len(reachable)
    return 2 * precision * recall / (precision + recall)


def test_comparison_vectors_mark_missing_values_null() -> None:
    model = MatchModel.default(["given_name", "email"])
    a = MatchRecord(id="a", given_name="ana", email="ana@x.com")
    vectors = comparison_vectors([(a, MatchRecord(id="b", given_name="ana"))], model)
    assert vectors.tolist() == [[0, -1]]


class TestEstimateU:
    def test_counts_chance_agreement_on_the_register(self, data: Dataset) -> None:
        start = MatchModel.default()
        estimated = estimate_u(data.records, start, sample_pairs=50_000, seed=1)
        # the synthetic register draws names from short lists, so namesakes are more common
        # than in the default's (large) register
        assert (
            estimated.comparisons["given_name"].level("exact").u
            > start.comparisons["given_name"].level("exact").u
        )
        for comparison in estimated.comparisons.values():
            assert sum(level.u for level in comparison.levels) == pytest.approx(1.0)
            assert all(level.u > 0 for level in comparison.levels)
        assert [lv.m for lv in estimated.comparisons["email"].levels] == [
            lv.m for lv in start.comparisons["email"].levels
        ]

    def test_counts_how_common_each_name_is(self, data: Dataset) -> None:
        estimated = estimate_u(data.records, MatchModel.default(), sample_pairs=1_000)
        families = estimated.term_frequencies["family_name"]
        assert families["garcia"] > families["ramos"]  # the generator draws surnames Zipf-like
        assert sum(families.values()) <= 1.0
        assert set(estimated.term_frequencies) == {"given_name", "family_name"}

    def test_deterministic_for_a_seed(self, data: Dataset) -> None:
        one = estimate_u(data.records, MatchModel.default(), sample_pairs=5_000, seed=3)
        two = estimate_u(data.records, MatchModel.default(), sample_pairs=5_000, seed=3)
        assert one == two


class TestEstimateEM:
    def test_recovers_weights_from_a_flattened_start(self, data: Dataset) -> None:
        start = estimate_u(data.records, flattened(MatchModel.default()), sample_pairs=50_000)
        records = data.records
        pairs = [(records[i], records[j]) for i, j in sorted(candidate_pairs(records))]
        model = estimate_em(pairs, start, population_size=len(records))
        assert f1_on_candidates(data, model, 0.9) >= 0.95
        exact = model.comparisons["birth_date"].level("exact")
        assert exact.m > 0.5
        assert model.comparisons["birth_date"].level("else").m < 0.2
        # the prior lands near the truth (within a factor of 3)
        true_prior = len(data.true_pairs()) / (len(records) * (len(records) - 1) / 2)
        assert true_prior / 3 < model.prior < true_prior * 3

    def test_fit_does_it_all(self, data: Dataset) -> None:
        assert f1_on_candidates(data, fit(data.records, sample_pairs=50_000), 0.9) >= 0.95

    def test_a_sample_of_the_pairs_gives_the_same_prior_when_its_share_is_said(self, data: Dataset) -> None:
        records = data.records
        start = estimate_u(records, MatchModel.default(), sample_pairs=20_000)
        pairs = [(records[i], records[j]) for i, j in sorted(candidate_pairs(records))]
        half = random.Random(5).sample(pairs, len(pairs) // 2)
        whole = estimate_em(pairs, start, population_size=len(records)).prior
        sampled = estimate_em(half, start, population_size=len(records), pair_share=0.5).prior
        assert sampled == pytest.approx(whole, rel=0.15)

    def test_no_pairs_changes_nothing(self) -> None:
        assert estimate_em([], MatchModel.default()) == MatchModel.default()

    def test_pseudo_counts_keep_unseen_levels_possible(self, data: Dataset) -> None:
        records = data.records[:200]
        pairs = [(records[i], records[j]) for i, j in sorted(candidate_pairs(records))]
        model = estimate_em(pairs, MatchModel.default())
        for comparison in model.comparisons.values():
            assert all(np.isfinite(level.weight) and level.m > 0 for level in comparison.levels)


class TestTuneFromLabels:
    def test_rejected_shared_email_pairs_weaken_a_shared_email(self) -> None:
        model = MatchModel.default()
        pairs = [
            (
                MatchRecord(id=f"a{i}", given_name="ana", family_name="ruiz", email=f"ruiz{i}@x.com"),
                MatchRecord(id=f"b{i}", given_name="luis", family_name="ruiz", email=f"ruiz{i}@x.com"),
                False,
            )
            for i in range(30)
        ]
        tuned = tune_from_labels(model, pairs)
        probe = (pairs[0][0], pairs[0][1])
        assert score(*probe, tuned).score < score(*probe, model).score
        assert (
            tuned.comparisons["email"].level("exact").related
            > model.comparisons["email"].level("exact").related
        )

    def test_confirmed_duplicates_with_new_emails_soften_email_disagreement(self) -> None:
        model = MatchModel.default()
        born = dt.date(1980, 1, 1)
        pairs = [
            (
                MatchRecord(
                    id=f"a{i}", given_name="ana", family_name="ruiz", email=f"a{i}@x.com", birth_date=born
                ),
                MatchRecord(
                    id=f"b{i}", given_name="ana", family_name="ruiz", email=f"b{i}@y.com", birth_date=born
                ),
                True,
            )
            for i in range(30)
        ]
        tuned = tune_from_labels(model, pairs, strength=2.0)
        before = model.comparisons["email"].level("else").weight
        after = tuned.comparisons["email"].level("else").weight
        assert before < after
        assert (
            tuned.comparisons["birth_date"].level("exact").weight
            > model.comparisons["birth_date"].level("exact").weight
        )

    def test_strength_scales_the_move(self) -> None:
        model = MatchModel.default()
        a = MatchRecord(id="a", given_name="ana", email="a@x.com")
        b = MatchRecord(id="b", given_name="ana", email="b@y.com")
        weak = tune_from_labels(model, [(a, b, True)] * 10, strength=0.5)
        strong = tune_from_labels(model, [(a, b, True)] * 10, strength=5.0)
        assert strong.comparisons["email"].level("else").m > weak.comparisons["email"].level("else").m

    def test_no_labels_changes_nothing(self) -> None:
        assert tune_from_labels(MatchModel.default(), []) == MatchModel.default()
