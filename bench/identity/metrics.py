"""Pairwise quality of a clustering against the truth, without enumerating pairs.

A clustering maps each record id to a cluster label. Two records form a *predicted pair* when they
share a predicted cluster and a *true pair* when they belong to the same person. With n_pt the
number of records in predicted cluster p that belong to true person t:

    true positives  = Σ_{p,t} C(n_pt, 2)
    predicted pairs = Σ_p C(n_p, 2)        true pairs = Σ_t C(n_t, 2)

so one pass over the records suffices. `sweep` does the same for every threshold of a scored edge
list at once: edges are added in descending score order to a union-find whose components count
their records per person, so joining components A and B adds |A|·|B| predicted pairs and
Σ_t A_t·B_t true positives.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any


def _pairs(n: int) -> int:
    return n * (n - 1) // 2


@dataclass(frozen=True)
class PairScores:
    true_positives: int
    predicted_pairs: int
    true_pairs: int

    @property
    def false_positives(self) -> int:
        return self.predicted_pairs - self.true_positives

    @property
    def false_negatives(self) -> int:
        return self.true_pairs - self.true_positives

    @property
    def precision(self) -> float:
        return self.true_positives / self.predicted_pairs if self.predicted_pairs else 1.0

    @property
    def recall(self) -> float:
        return self.true_positives / self.true_pairs if self.true_pairs else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "false_positives": self.false_positives,
            "false_negatives": self.false_negatives,
            "precision": self.precision,
            "recall": self.recall,
            "f1": self.f1,
        }


def pairwise(predicted: Mapping[str, Hashable], truth: Mapping[str, Hashable]) -> PairScores:
    """Scores of `predicted` (record → cluster) against `truth` (record → person).

    Every record of `truth` counts; one missing from `predicted` is a cluster of its own. Records
    only in `predicted` are ignored.
    """
    joint: Counter[tuple[Hashable, Hashable]] = Counter()
    clusters: Counter[Hashable] = Counter()
    people: Counter[Hashable] = Counter()
    for record, person in truth.items():
        cluster: Hashable = predicted.get(record, ("__alone__", record))
        joint[(cluster, person)] += 1
        clusters[cluster] += 1
        people[person] += 1
    return PairScores(
        true_positives=sum(_pairs(n) for n in joint.values()),
        predicted_pairs=sum(_pairs(n) for n in clusters.values()),
        true_pairs=sum(_pairs(n) for n in people.values()),
    )


def cluster_summary(predicted: Mapping[str, Hashable], truth: Mapping[str, Hashable]) -> dict[str, int]:
    """How many clusters, how many people, and how many people were found exactly (one cluster, alone)."""
    label: dict[str, Hashable] = {r: predicted.get(r, ("__alone__", r)) for r in truth}
    members: dict[Hashable, set[str]] = {}
    for record, cluster in label.items():
        members.setdefault(cluster, set()).add(record)
    people: dict[Hashable, set[str]] = {}
    for record, person in truth.items():
        people.setdefault(person, set()).add(record)
    exact = sum(1 for records in people.values() if members[label[next(iter(records))]] == records)
    return {"clusters": len(members), "people": len(people), "people_exact": exact}


@dataclass(frozen=True)
class SweepPoint:
    threshold: float
    precision: float
    recall: float
    f1: float


def sweep(edges: Iterable[tuple[str, str, float]], truth: Mapping[str, Hashable]) -> list[SweepPoint]:
    """Precision, recall and F1 of connected components at every threshold (score ≥ threshold).

    Points are ordered by descending threshold; the first has no edges when none scores 1.0.
    """
    parent: dict[str, str] = {r: r for r in truth}
    counts: dict[str, Counter[Hashable]] = {r: Counter({p: 1}) for r, p in truth.items()}
    size: dict[str, int] = dict.fromkeys(truth, 1)

    def find(x: str) -> str:
        root = x
        while parent[root] != root:
            root = parent[root]
        while parent[x] != root:
            parent[x], x = root, parent[x]
        return root

    true_pairs = sum(_pairs(n) for n in Counter(truth.values()).values())
    tp = predicted = 0
    points: list[SweepPoint] = []

    def point(threshold: float) -> SweepPoint:
        precision = tp / predicted if predicted else 1.0
        recall = tp / true_pairs if true_pairs else 1.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        return SweepPoint(threshold, precision, recall, f1)

    ordered = sorted((e for e in edges if e[0] in parent and e[1] in parent), key=lambda e: -e[2])
    current: float | None = None
    for a, b, score in ordered:
        if current is not None and score != current:
            points.append(point(current))
        current = score
        ra, rb = find(a), find(b)
        if ra == rb:
            continue
        if size[ra] < size[rb]:
            ra, rb = rb, ra
        small, large = counts[rb], counts[ra]
        tp += sum(n * large.get(person, 0) for person, n in small.items())
        predicted += size[ra] * size[rb]
        large.update(small)
        del counts[rb]
        size[ra] += size[rb]
        parent[rb] = ra
    if current is not None:
        points.append(point(current))
    return points


def best_f1(points: list[SweepPoint]) -> SweepPoint | None:
    return max(points, key=lambda p: (p.f1, p.threshold)) if points else None


def at_threshold(points: list[SweepPoint], threshold: float) -> SweepPoint | None:
    """The point of the sweep for `threshold`: every edge scoring at least it."""
    eligible = [p for p in points if p.threshold >= threshold]
    return min(eligible, key=lambda p: p.threshold) if eligible else None
