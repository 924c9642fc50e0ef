"""Scoring a pair of records: the posterior log-odds that they are the same customer, explained.

`score` runs every comparison of the model, looks up each outcome's m, u and r, and combines them
as the model documentation describes (Fellegi–Sunter with a related-non-match class). The result
keeps one `FieldEvidence` per comparison, so a reviewer sees why: which values were compared, the
level reached and its weight in bits. The weights, the prior log-odds and a last `related`
adjustment (negative when the pair looks like two relatives rather than one person) add up to the
score exactly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from services.identity.matching.comparisons import LEVEL_FUNCTIONS, shown_values, term_value
from services.identity.matching.model import PROBABILITY_FLOOR, MatchModel
from services.identity.matching.record import MatchRecord

NULL_LEVEL = "null"
RELATED = "related"
# Above this many bits the probability rounds to 1.0 in a float: report it as such.
_MAX_BITS = 1000.0


@dataclass(frozen=True)
class FieldEvidence:
    """What one comparison contributed: its level and weight (bits), and the values compared."""

    field: str
    level: str
    weight: float
    left: str | None
    right: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "field": self.field,
            "level": self.level,
            "weight": round(self.weight, 3),
            "left": self.left,
            "right": self.right,
        }


@dataclass(frozen=True)
class MatchResult:
    """Total log2 posterior odds (`score`, prior included), the probability, and the evidence."""

    score: float
    probability: float
    evidence: tuple[FieldEvidence, ...]
    prior_weight: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "score": round(self.score, 3),
            "probability": self.probability,
            "prior_weight": round(self.prior_weight, 3),
            "evidence": [e.to_json() for e in self.evidence],
        }


def _log2(p: float) -> float:
    return math.log2(max(p, PROBABILITY_FLOOR))


def score(a: MatchRecord, b: MatchRecord, model: MatchModel) -> MatchResult:
    """How strongly the evidence says `a` and `b` are the same customer."""
    log_m = math.log2(model.prior)
    log_r = _log2(model.related_prior) if model.related_prior > 0 else -math.inf
    log_u = math.log2(1.0 - model.prior - model.related_prior)
    evidence: list[FieldEvidence] = []
    fs_total = 0.0
    for key, comparison in model.comparisons.items():
        outcome = LEVEL_FUNCTIONS[key](a, b)
        left, right = shown_values(key, a), shown_values(key, b)
        if outcome is None:
            evidence.append(FieldEvidence(key, NULL_LEVEL, 0.0, left, right))
            continue
        level = comparison.level(outcome)
        u = level.u
        if model.term_frequencies and outcome == comparison.levels[0].name:
            u = model.term_u(key, term_value(key, a), level)
        lm, lu, lr = _log2(level.m), _log2(u), _log2(level.related)
        log_m += lm
        log_u += lu
        log_r += lr
        fs_total += lm - lu
        evidence.append(FieldEvidence(key, outcome, lm - lu, left, right))
    total = log_m - _log2_sum(log_u, log_r)
    prior_weight = model.prior_weight
    adjustment = total - prior_weight - fs_total
    if model.related_prior > 0:
        level_name = "relatives" if adjustment <= -1.0 else "unlikely"
        evidence.append(FieldEvidence(RELATED, level_name, adjustment, None, None))
    return MatchResult(
        score=total, probability=probability(total), evidence=tuple(evidence), prior_weight=prior_weight
    )


def _log2_sum(x: float, y: float) -> float:
    """log2(2**x + 2**y) without overflow."""
    if x < y:
        x, y = y, x
    if y == -math.inf:
        return x
    return x + math.log2(1.0 + math.pow(2.0, y - x))


def probability(bits: float) -> float:
    """The probability for posterior log2-odds `bits`."""
    if bits >= _MAX_BITS:
        return 1.0
    if bits <= -_MAX_BITS:
        return 0.0
    return 1.0 / (1.0 + math.pow(2.0, -bits))


def best_match(
    record: MatchRecord, candidates: Sequence[MatchRecord], model: MatchModel
) -> tuple[MatchRecord, MatchResult] | None:
    """The candidate scoring highest against `record` (the record itself, same id, is skipped),
    or None without candidates."""
    best: tuple[MatchRecord, MatchResult] | None = None
    for candidate in candidates:
        if candidate.id == record.id:
            continue
        result = score(record, candidate, model)
        if best is None or result.score > best[1].score:
            best = (candidate, result)
    return best
