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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from services.identity.matching.comparisons import _PROFILE_FUNCTIONS, _Profile, _profile
from services.identity.matching.model import PROBABILITY_FLOOR, ComparisonLevel, MatchModel, generation
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


# FieldEvidence and MatchResult are frozen dataclasses, whose generated __init__ sets each field
# through object.__setattr__; `score` builds ten of them per call, so it fills the instance
# dictionary directly instead (the same attributes in the same order: equal, hashable, picklable
# exactly as if built through __init__).
_new = object.__new__


def _evidence(field: str, level: str, weight: float, left: str | None, right: str | None) -> FieldEvidence:
    evidence = _new(FieldEvidence)
    values = evidence.__dict__
    values["field"] = field
    values["level"] = level
    values["weight"] = weight
    values["left"] = left
    values["right"] = right
    return evidence


def _result(total: float, evidence: tuple[FieldEvidence, ...], prior_weight: float) -> MatchResult:
    result = _new(MatchResult)
    values = result.__dict__
    values["score"] = total
    values["probability"] = probability(total)
    values["evidence"] = evidence
    values["prior_weight"] = prior_weight
    return result


# Per comparison: its key, level function, level name -> (level, log2 m, log2 u, log2 r,
# weight) and the name of its first (exact) level.
_Step = tuple[
    str,
    Callable[[_Profile, _Profile], str | None],
    dict[str, tuple[ComparisonLevel, float, float, float, float]],
    str,
]


class _Plan:
    """What `score` precomputes from a model: the logarithms of every level's m, u and r."""

    __slots__ = (
        "comparisons",
        "generation",
        "log_m",
        "log_r",
        "log_u",
        "model",
        "prior",
        "prior_weight",
        "related_prior",
        "steps",
    )  # fmt: skip

    def __init__(self, model: MatchModel) -> None:
        self.model = model
        self.prior = model.prior
        self.related_prior = model.related_prior
        self.comparisons = model.comparisons
        self.generation = generation()
        self.log_m = math.log2(model.prior)
        self.log_r = _log2(model.related_prior) if model.related_prior > 0 else -math.inf
        self.log_u = math.log2(1.0 - model.prior - model.related_prior)
        self.prior_weight = model.prior_weight
        steps: list[_Step] = []
        for key, comparison in model.comparisons.items():
            table: dict[str, tuple[ComparisonLevel, float, float, float, float]] = {}
            for level in comparison.levels:
                if level.name not in table:  # `Comparison.level` finds the first one
                    lm, lu, lr = _log2(level.m), _log2(level.u), _log2(level.related)
                    table[level.name] = (level, lm, lu, lr, lm - lu)
            steps.append((key, _PROFILE_FUNCTIONS[key], table, comparison.levels[0].name))
        self.steps = tuple(steps)


_PLANS: dict[int, _Plan] = {}
_MAX_PLANS = 64


def _plan(model: MatchModel) -> _Plan:
    plan = _PLANS.get(id(model))
    if (
        plan is not None
        and plan.model is model
        and plan.generation == generation()
        and plan.comparisons is model.comparisons
        and plan.prior == model.prior
        and plan.related_prior == model.related_prior
    ):
        return plan
    plan = _Plan(model)
    if len(_PLANS) >= _MAX_PLANS:
        _PLANS.clear()
    _PLANS[id(model)] = plan
    return plan


def _term_value(key: str, profile: _Profile) -> str | None:
    if key == "given_name":
        return profile.given_canon
    if key == "family_name":
        return profile.family
    return None


def score(a: MatchRecord, b: MatchRecord, model: MatchModel) -> MatchResult:
    """How strongly the evidence says `a` and `b` are the same customer."""
    plan = _PLANS.get(id(model))
    if (
        plan is None
        or plan.model is not model
        or plan.generation != generation()
        or plan.comparisons is not model.comparisons
        or plan.prior != model.prior
        or plan.related_prior != model.related_prior
    ):
        plan = _plan(model)
    pa, pb = _profile(a), _profile(b)
    shown_a, shown_b = pa.shown, pb.shown
    log_m, log_u, log_r = plan.log_m, plan.log_u, plan.log_r
    term_frequencies = model.term_frequencies
    evidence: list[FieldEvidence] = []
    append = evidence.append
    fs_total = 0.0
    for key, function, table, first in plan.steps:
        outcome = function(pa, pb)
        item = _new(FieldEvidence)
        values = item.__dict__
        values["field"] = key
        if outcome is None:
            values["level"] = NULL_LEVEL
            values["weight"] = 0.0
        else:
            level, lm, lu, lr, weight = table[outcome]
            if term_frequencies and outcome == first:
                lu = _log2(model.term_u(key, _term_value(key, pa), level))
                weight = lm - lu
            log_m += lm
            log_u += lu
            log_r += lr
            fs_total += weight
            values["level"] = outcome
            values["weight"] = weight
        values["left"] = shown_a[key]
        values["right"] = shown_b[key]
        append(item)
    total = log_m - _log2_sum(log_u, log_r)
    prior_weight = plan.prior_weight
    adjustment = total - prior_weight - fs_total
    if model.related_prior > 0:
        level_name = "relatives" if adjustment <= -1.0 else "unlikely"
        append(_evidence(RELATED, level_name, adjustment, None, None))
    return _result(total, tuple(evidence), prior_weight)


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
