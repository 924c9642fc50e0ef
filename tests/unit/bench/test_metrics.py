"""Pairwise precision/recall/F1 and the threshold sweep, against hand-made clusterings and brute force."""

from __future__ import annotations

import random
from collections.abc import Hashable, Mapping
from itertools import combinations

import pytest

from bench.identity import metrics


def brute_force(predicted: Mapping[str, Hashable], truth: Mapping[str, Hashable]) -> tuple[int, int, int]:
    ids = sorted(truth)
    label = {r: predicted.get(r, ("alone", r)) for r in ids}
    same_pred = {(a, b) for a, b in combinations(ids, 2) if label[a] == label[b]}
    same_true = {(a, b) for a, b in combinations(ids, 2) if truth[a] == truth[b]}
    return len(same_pred & same_true), len(same_pred), len(same_true)


TRUTH = {"a": "P1", "b": "P1", "c": "P1", "d": "P2", "e": "P2", "f": "P3"}


def test_perfect_clustering() -> None:
    scores = metrics.pairwise({"a": 1, "b": 1, "c": 1, "d": 2, "e": 2, "f": 3}, TRUTH)
    assert (scores.true_positives, scores.predicted_pairs, scores.true_pairs) == (4, 4, 4)
    assert scores.precision == scores.recall == scores.f1 == 1.0


def test_hand_made_clustering() -> None:
    # {a,b} {c,d,e} {f}: true pairs ab, de; predicted ab, cd, ce, de.
    scores = metrics.pairwise({"a": "x", "b": "x", "c": "y", "d": "y", "e": "y", "f": "z"}, TRUTH)
    assert (scores.true_positives, scores.predicted_pairs, scores.true_pairs) == (2, 4, 4)
    assert scores.false_positives == 2
    assert scores.false_negatives == 2
    assert scores.precision == pytest.approx(0.5)
    assert scores.recall == pytest.approx(0.5)
    assert scores.f1 == pytest.approx(0.5)


def test_all_singletons_are_precise_and_recall_nothing() -> None:
    scores = metrics.pairwise({}, TRUTH)  # records missing from the prediction stand alone
    assert scores.predicted_pairs == 0
    assert scores.precision == 1.0
    assert scores.recall == 0.0
    assert scores.f1 == 0.0


def test_one_big_cluster() -> None:
    scores = metrics.pairwise(dict.fromkeys(TRUTH, "all"), TRUTH)
    assert scores.predicted_pairs == 15
    assert scores.true_positives == 4
    assert scores.recall == 1.0
    assert scores.precision == pytest.approx(4 / 15)


def test_no_true_pairs() -> None:
    truth = {"a": 1, "b": 2}
    assert metrics.pairwise({"a": 0, "b": 0}, truth).recall == 1.0
    assert metrics.pairwise({"a": 0, "b": 0}, truth).precision == 0.0


def test_records_only_in_prediction_are_ignored() -> None:
    scores = metrics.pairwise({"a": 1, "b": 1, "zz": 1}, {"a": "P", "b": "P"})
    assert (scores.true_positives, scores.predicted_pairs, scores.true_pairs) == (1, 1, 1)


def test_cluster_summary() -> None:
    summary = metrics.cluster_summary({"a": 1, "b": 1, "c": 1, "d": 2, "e": 3, "f": 4}, TRUTH)
    assert summary == {"clusters": 4, "people": 3, "people_exact": 2}  # P1 and P3 exact, P2 split


@pytest.mark.parametrize("seed", range(20))
def test_matches_brute_force_on_random_clusterings(seed: int) -> None:
    rng = random.Random(seed)
    ids = [f"r{i}" for i in range(rng.randint(1, 40))]
    truth = {r: rng.randrange(8) for r in ids}
    predicted = {r: rng.randrange(6) for r in ids if rng.random() < 0.9}
    scores = metrics.pairwise(predicted, truth)
    assert (scores.true_positives, scores.predicted_pairs, scores.true_pairs) == brute_force(predicted, truth)


def components(ids: list[str], edges: list[tuple[str, str, float]], threshold: float) -> dict[str, str]:
    label = {r: r for r in ids}
    changed = True
    while changed:
        changed = False
        for a, b, p in edges:
            if p >= threshold and label[a] != label[b]:
                low = min(label[a], label[b])
                label[a] = label[b] = low
                changed = True
    return label


@pytest.mark.parametrize("seed", range(15))
def test_sweep_equals_clustering_at_every_threshold(seed: int) -> None:
    rng = random.Random(seed)
    ids = [f"r{i:02d}" for i in range(rng.randint(2, 30))]
    truth = {r: rng.randrange(6) for r in ids}
    edges = [
        (a, b, rng.choice((0.2, 0.5, 0.9, 0.99, 1.0))) for a, b in combinations(ids, 2) if rng.random() < 0.15
    ]
    points = metrics.sweep(edges, truth)
    assert [p.threshold for p in points] == sorted({e[2] for e in edges}, reverse=True)
    for point in points:
        expected = metrics.pairwise(components(ids, edges, point.threshold), truth)
        assert point.precision == pytest.approx(expected.precision)
        assert point.recall == pytest.approx(expected.recall)
        assert point.f1 == pytest.approx(expected.f1)


def test_sweep_best_and_at_threshold() -> None:
    edges = [("a", "b", 0.999), ("d", "e", 0.995), ("c", "d", 0.9), ("b", "c", 0.5)]
    points = metrics.sweep(edges, TRUTH)
    at = metrics.at_threshold(points, 0.99)
    assert at is not None
    assert at.threshold == 0.995
    assert (at.precision, at.recall) == (1.0, 0.5)
    best = metrics.best_f1(points)
    assert best is not None
    assert best.threshold == 0.995  # joining c to {d, e} (0.9) adds two wrong pairs
    assert metrics.at_threshold(points, 0.9999) is None
    assert metrics.best_f1([]) is None


def test_sweep_ignores_unknown_records() -> None:
    points = metrics.sweep([("a", "zz", 1.0), ("a", "b", 0.9)], {"a": 1, "b": 1})
    assert [(p.threshold, p.recall) for p in points] == [(0.9, 1.0)]
