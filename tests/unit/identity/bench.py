"""Accuracy and speed of the matching engine on synthetic data (a script, not a test).

    .venv/bin/python -m tests.unit.identity.bench [households] [seed]

Prints blocking recall, pairwise precision / recall / F1 at the auto-merge (0.99) and review
(0.8) thresholds for the default model and for `fit` (u from random pairs + EM), counted over all
true pairs (blocking misses are misses), and the time per `score()` call and per incoming record
against 50 candidates.
"""

from __future__ import annotations

import random
import sys
import time
import timeit

from services.identity.matching import MatchModel, MatchRecord, best_match, candidate_pairs, fit, score
from tests.unit.identity.synthetic import generate, pair_key

THRESHOLDS = (0.99, 0.8)


def metrics(predicted: set[tuple[str, str]], truth: set[tuple[str, str]]) -> tuple[float, float, float]:
    true_positives = len(predicted & truth)
    precision = true_positives / len(predicted) if predicted else 1.0
    recall = true_positives / len(truth)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def main(households: int = 5000, seed: int = 1) -> None:
    data = generate(households, seed=seed)
    records = data.records
    truth = data.true_pairs()
    started = time.perf_counter()
    candidates = sorted(candidate_pairs(records))
    blocking_seconds = time.perf_counter() - started
    found = {pair_key(records[i].id, records[j].id) for i, j in candidates}
    print(f"{len(records)} records, {len(truth)} true pairs, {len(candidates)} candidate pairs "
          f"({len(candidates) / len(records):.1f} per record, blocked in {blocking_seconds:.1f} s), "
          f"blocking recall {len(truth & found) / len(truth):.4f}")  # fmt: skip

    started = time.perf_counter()
    trained = fit(records)
    print(f"fit: {time.perf_counter() - started:.1f} s")
    for name, model in (("default", MatchModel.default()), ("fit", trained)):
        probabilities = {
            pair_key(records[i].id, records[j].id): score(records[i], records[j], model).probability
            for i, j in candidates
        }
        for threshold in THRESHOLDS:
            predicted = {k for k, p in probabilities.items() if p >= threshold}
            precision, recall, f1 = metrics(predicted, truth)
            print(
                f"{name:8s} threshold {threshold}: precision {precision:.4f} recall {recall:.4f} F1 {f1:.4f}"
            )

    model = MatchModel.default()
    rng = random.Random(seed)
    sample = [(records[i], records[j]) for i, j in rng.sample(candidates, min(2000, len(candidates)))]
    per_call = min(timeit.repeat(lambda: [score(a, b, model) for a, b in sample], number=1, repeat=5)) / len(
        sample
    )
    incoming: MatchRecord = records[0]
    fifty = [b for _, b in sample[:50]]
    per_record = min(timeit.repeat(lambda: best_match(incoming, fifty, model), number=20, repeat=5)) / 20
    print(f"score(): {per_call * 1e6:.1f} µs per call; against 50 candidates: {per_record * 1e3:.2f} ms")


if __name__ == "__main__":
    main(*(int(arg) for arg in sys.argv[1:3]))
