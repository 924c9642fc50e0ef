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

from services.identity.matching.comparisons import _PROFILE_FUNCTIONS, PRESENT, _Profile, _profile
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
        "best",
        "bounded",
        "comparisons",
        "deltas",
        "generation",
        "log_m",
        "log_r",
        "log_u",
        "model",
        "prior",
        "prior_weight",
        "related_prior",
        "steps",
        "terms",
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
        self.bounded, self.terms, self.best = _bounded_steps(self.steps)
        # Per bounded step and outcome: what it adds to log m - log u and to log m - log r.
        self.deltas = tuple(
            {name: (lm - lu, lm - lr) for name, (lm, lu, lr, _) in table.items()}
            for _, table, *_ in self.bounded
        )


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
    shown_a, shown_b = pa.shown(a), pb.shown(b)
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


# For `ScoreFloor`, per comparison in the order that bounds the score soonest: its function, its
# table of level -> (log2 m, log2 u, log2 r, level), the exact level's name, the key if the exact
# level's u may be the value's own (term frequencies), and the most the comparisons AFTER it can add
# to log m - log u and to log m - log r (each the sum of their best level's, or 0 for a null outcome).
_Bounded = tuple[
    Callable[[_Profile, _Profile], str | None],
    dict[str, tuple[float, float, float, ComparisonLevel]],
    str,
    str | None,
    float,
    float,
]
_TERM_KEYS = ("given_name", "family_name")  # those `_term_value` gives a value for


def _bounded_steps(
    steps: Sequence[_Step],
) -> tuple[tuple[_Bounded, ...], tuple[tuple[int, str, float], ...], tuple[tuple[str, float, float], ...]]:
    """The steps for `ScoreFloor`; (position, key, most the table adds to log m - log u) of each
    step whose exact level's u may be a value's own; and per step its comparison's key and the most
    its table adds to log m - log u and to log m - log r."""
    best: list[tuple[float, float]] = []
    for _key, _, table, _first in steps:
        best.append(
            (
                max(0.0, *(row[1] - row[2] for row in table.values())),
                max(0.0, *(row[1] - row[3] for row in table.values())),
            )
        )
    # The comparisons able to add most go first: after them, little can lift the score.
    order = sorted(range(len(steps)), key=lambda i: -best[i][0])
    bounded: list[_Bounded] = []
    terms: list[tuple[int, str, float]] = []
    kept: list[tuple[str, float, float]] = []
    for position, i in enumerate(order):
        key, function, table, first = steps[i]
        kept.append((key, *best[i]))
        after = [best[j] for j in order[position + 1 :]]
        term_key = key if key in _TERM_KEYS else None
        if term_key is not None:
            terms.append((position, key, best[i][0]))
        bounded.append(
            (
                function,
                {name: (row[1], row[2], row[3], row[0]) for name, row in table.items()},
                first,
                term_key,
                sum(u for u, _ in after),
                sum(r for _, r in after),
            )
        )
    return tuple(bounded), tuple(terms), tuple(kept)


class ScoreFloor:
    """Scores pairs of `a` and other records only as far as needed to know whether their score can
    be at least `floor` bits: `reaches(b)` is `score(a, b, model)` if it can, else None — found out,
    for most pairs that are not a match, after the few comparisons able to add most to the score.

    The score is log m - log2(2^log u + 2^log r) (sums over the comparisons, priors included), so it
    is at most both log m - log u and log m - log r. After each comparison, the most the others can
    still add to each of those is known: the sum of their best level's (the exact level of a name
    taking `a`'s name's own u from the model's term frequencies, as `score` does; a comparison of a
    value `a` lacks is null whatever `b` holds, so it is left out, `comparisons.PRESENT`). Once even the
    smaller of the two cannot reach `floor`, the pair is dropped: never one that `score` puts at or
    above `floor`. A pair that is not dropped is scored by `score`, so its result is exactly that.
    The model is read when the floor is made: make a new one after changing the model."""

    __slots__ = ("a", "floor", "model", "pa", "start", "steps")

    def __init__(self, a: MatchRecord, model: MatchModel, floor: float) -> None:
        plan = _plan(model)
        self.a, self.model = a, model
        self.pa = pa = _profile(a)
        self.floor = floor = (
            floor - 1e-6
        )  # float rounding: these sums are taken in another order than `score`'s
        # A comparison whose value `a` lacks is null whatever `b` holds: it adds nothing, and is left
        # out (of the steps, and of what later steps could add).
        present = [PRESENT[key](pa) for key, _, _ in plan.best]
        # The exact level of a name adds a's own name's weight (from its term frequency) to log m -
        # log u: by `extra` more than the table's best, which the bounds of earlier steps allow for.
        extra = [0.0] * len(plan.bounded)
        own: dict[int, float] = {}
        if model.term_frequencies:
            for position, key, table_best in plan.terms:
                if present[position]:
                    _, table, first, _, _, _ = plan.bounded[position]
                    lm, _, _, level = table[first]
                    own[position] = lm - _log2(model.term_u(key, _term_value(key, pa), level))
                    extra[position] = max(0.0, own[position] - table_best)
        # Per step (last first): its level function; per outcome what it adds to log m - log u and
        # to log m - log r; and the least each of those must be after it for the pair to stay in
        # reach: the floor less the most the later steps can still add.
        steps: list[
            tuple[Callable[[_Profile, _Profile], str | None], dict[str, tuple[float, float]], float, float]
        ]
        steps = []
        more_u = more_r = 0.0
        for position in reversed(range(len(plan.bounded))):
            if not present[position]:
                continue
            function, _, first, _, _, _ = plan.bounded[position]
            deltas = plan.deltas[position]
            if position in own:
                deltas = {**deltas, first: (own[position], deltas[first][1])}
            steps.append((function, deltas, floor - more_u, floor - more_r))
            _, best_u, best_r = plan.best[position]
            more_u += best_u + extra[position]
            more_r += best_r
        steps.reverse()
        self.steps = tuple(steps)
        self.start = (plan.log_m - plan.log_u, plan.log_m - plan.log_r)

    def reaches(self, b: MatchRecord) -> MatchResult | None:
        pa = self.pa
        pb: _Profile | None = b.derived  # type: ignore[assignment]  # (`_profile` inlined: kept on b)
        if pb is None:
            pb = _profile(b)
        to_u, to_r = self.start
        for function, deltas, least_u, least_r in self.steps:
            outcome = function(pa, pb)
            if outcome is not None:
                add_u, add_r = deltas[outcome]
                to_u += add_u
                to_r += add_r
            if to_u < least_u or to_r < least_r:
                return None
        if to_u < self.floor or to_r < self.floor:  # (no step at all: a lacks every value)
            return None
        return score(self.a, b, self.model)


def score_reaches(a: MatchRecord, b: MatchRecord, model: MatchModel, floor: float) -> MatchResult | None:
    """`score(a, b, model)` if its score can be at least `floor` bits, else None (see `ScoreFloor`)."""
    return ScoreFloor(a, model, floor).reaches(b)


def _log2_sum(x: float, y: float) -> float:
    """log2(2**x + 2**y) without overflow."""
    if x < y:
        x, y = y, x
    if y == -math.inf:
        return x
    return x + math.log2(1.0 + math.pow(2.0, y - x))


def log_odds(p: float) -> float:
    """The posterior log2-odds (bits) whose `probability` is `p` (0 < p < 1; ±inf at 0 and 1)."""
    if p <= 0.0:
        return -math.inf
    if p >= 1.0:
        return math.inf
    return math.log2(p / (1.0 - p))


def review_floor(p: float) -> float:
    """The floor in bits (for `ScoreFloor`) below which a pair's probability is under `p`: its
    log-odds a little lowered, and at most 30 bits (near 1 the probability's rounding blurs them)."""
    return min(log_odds(p), 30.0) - 1e-3


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
