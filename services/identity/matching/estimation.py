"""Estimating the model's probabilities from the register itself, and from reviewers' decisions.

* `estimate_u` — u is the chance that two random records agree at a level. Random pairs are
  almost all non-matches, so u is simply counted on a random sample of pairs.
* `estimate_em` — the priors, m and r from the blocked candidate pairs, unsupervised, by
  expectation–maximisation over the pairs' comparison vectors: each pair is shared between the
  three classes (match, related non-match, other non-match) by how well it fits each (E step);
  each class's level probabilities are recounted from those shares (M step), until nothing
  moves. Staged — priors first with the level probabilities held, then m and r with the priors
  held, each pair counted for its most likely class — because plain EM lets the many candidate
  pairs that merely share a common name grow into a "match" class. u stays as `estimate_u`
  measured it: candidate pairs are not random pairs, and re-estimating u on them would call
  agreement on the blocking keys "normal". Because u and the priors refer to random pairs, the
  priors are recounted over all N·(N−1)/2 pairs of the register, not just the candidates (pairs
  blocking leaves out are assumed non-matches). `fit` runs `estimate_u` then `estimate_em`.
* `tune_from_labels` — a Bayesian blend of the model with counts from reviewed pairs: the current
  probabilities act as a Dirichlet prior worth `prior_pairs` pairs per comparison. Confirmed
  matches update m; rejected pairs update r (the related-non-match profile), because what
  reviewers reject are exactly the pairs that looked alike, not a random sample — they say
  nothing about u.

Pseudo-counts towards the starting model keep EM away from degenerate solutions (a level that no
pair reaches would otherwise get probability 0 and an infinite weight).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from services.identity.matching.blocking import candidate_pairs
from services.identity.matching.comparisons import LEVEL_FUNCTIONS, TERM_FIELDS, term_value
from services.identity.matching.model import PROBABILITY_FLOOR, Comparison, ComparisonLevel, MatchModel
from services.identity.matching.record import MatchRecord

IntArray = npt.NDArray[np.int16]
FloatArray = npt.NDArray[np.float64]
NULL = -1
MIN_TERM_COUNT = 3


def comparison_vectors(pairs: Sequence[tuple[MatchRecord, MatchRecord]], model: MatchModel) -> IntArray:
    """One row per pair, one column per comparison of `model`: the level index, or -1 (null)."""
    keys = list(model.comparisons)
    indices = [{level.name: i for i, level in enumerate(model.comparisons[k].levels)} for k in keys]
    functions = [LEVEL_FUNCTIONS[k] for k in keys]
    out = np.full((len(pairs), len(keys)), NULL, dtype=np.int16)
    for row, (a, b) in enumerate(pairs):
        for col, function in enumerate(functions):
            outcome = function(a, b)
            if outcome is not None:
                out[row, col] = indices[col][outcome]
    return out


def _level_counts(column: IntArray, weights: FloatArray | None, size: int) -> FloatArray:
    present = column >= 0
    chosen = column[present]
    w = None if weights is None else weights[present]
    return np.bincount(chosen, weights=w, minlength=size).astype(np.float64)


def _with_levels(
    model: MatchModel,
    *,
    m: dict[str, FloatArray] | None = None,
    u: dict[str, FloatArray] | None = None,
    r: dict[str, FloatArray] | None = None,
    prior: float | None = None,
    related_prior: float | None = None,
    term_frequencies: dict[str, dict[str, float]] | None = None,
) -> MatchModel:
    """A copy of `model` with some probabilities replaced."""
    comparisons: dict[str, Comparison] = {}
    for key, comparison in model.comparisons.items():
        levels = []
        for i, level in enumerate(comparison.levels):
            levels.append(
                ComparisonLevel(
                    name=level.name,
                    m=float(m[key][i]) if m and key in m else level.m,
                    u=float(u[key][i]) if u and key in u else level.u,
                    r=float(r[key][i]) if r and key in r else level.r,
                )
            )
        comparisons[key] = Comparison(key, levels)
    return MatchModel(
        prior=model.prior if prior is None else prior,
        comparisons=comparisons,
        related_prior=model.related_prior if related_prior is None else related_prior,
        term_frequencies=dict(model.term_frequencies) if term_frequencies is None else term_frequencies,
    )


def _array(model: MatchModel, key: str, attribute: str) -> FloatArray:
    levels = model.comparisons[key].levels
    values = [level.related if attribute == "r" else getattr(level, attribute) for level in levels]
    return np.array(values, dtype=np.float64)


# ---------------------------------------------------------------------------------------------- u


def estimate_u(
    records: Sequence[MatchRecord], model: MatchModel, sample_pairs: int = 200_000, seed: int = 0
) -> MatchModel:
    """`model` with u counted on `sample_pairs` random pairs of `records` (every pair when there
    are fewer). A level the sample never reaches keeps its u if that is already below 1/sample
    size (the sample cannot resolve it), otherwise gets 1/sample size. Also counts the names'
    term frequencies on all `records` (`term_frequencies`)."""
    n = len(records)
    if n < 2:
        return _with_levels(model)
    all_pairs = n * (n - 1) // 2
    if all_pairs <= sample_pairs:
        pairs = [(records[i], records[j]) for i in range(n) for j in range(i + 1, n)]
    else:
        rng = random.Random(seed)
        pairs = []
        for _ in range(sample_pairs):
            i, j = rng.sample(range(n), 2)
            pairs.append((records[i], records[j]))
    vectors = comparison_vectors(pairs, model)
    terms = {key: term_frequencies(records, key) for key in TERM_FIELDS if key in model.comparisons}
    new_u: dict[str, FloatArray] = {}
    for col, key in enumerate(model.comparisons):
        old = _array(model, key, "u")
        counts = _level_counts(vectors[:, col], None, len(old))
        total = counts.sum()
        if total == 0:
            continue
        estimate = np.where(counts > 0, counts / total, np.minimum(old, 1.0 / total))
        new_u[key] = estimate / estimate.sum()
    return _with_levels(model, u=new_u, term_frequencies={k: t for k, t in terms.items() if t})


def term_frequencies(
    records: Sequence[MatchRecord], key: str, min_count: int = MIN_TERM_COUNT
) -> dict[str, float]:
    """For comparison `key`, the share of records (with a value) holding each value that occurs at
    least `min_count` times; rarer values keep the level's average u, which is already high
    enough for them."""
    counts: dict[str, int] = {}
    for record in records:
        value = term_value(key, record)
        if value is not None:
            counts[value] = counts.get(value, 0) + 1
    total = sum(counts.values())
    return {value: n / total for value, n in counts.items() if n >= min_count}


# --------------------------------------------------------------------------------------------- EM


def _log_likelihood(vectors: IntArray, tables: list[FloatArray]) -> FloatArray:
    """Per pair, the sum over comparisons of log P(level | class); nulls contribute 0."""
    total = np.zeros(vectors.shape[0], dtype=np.float64)
    for col, table in enumerate(tables):
        logs = np.log(np.maximum(table, PROBABILITY_FLOOR))
        column = vectors[:, col]
        total += np.where(column >= 0, logs[np.maximum(column, 0)], 0.0)
    return total


def _term_adjustments(
    pairs: Sequence[tuple[MatchRecord, MatchRecord]], vectors: IntArray, model: MatchModel
) -> FloatArray:
    """Per pair, log(term u / level u) summed over the exact name agreements: how much likelier
    the pair is among random pairs than the level's average u says, because the name is common."""
    out = np.zeros(len(pairs), dtype=np.float64)
    keys = list(model.comparisons)
    for key, table in model.term_frequencies.items():
        if key not in model.comparisons or not table:
            continue
        col = keys.index(key)
        exact = model.comparisons[key].levels[0]
        base = math.log(max(exact.u, PROBABILITY_FLOOR))
        for row in np.flatnonzero(vectors[:, col] == 0).tolist():
            u = model.term_u(key, term_value(key, pairs[row][0]), exact)
            out[row] += math.log(max(u, PROBABILITY_FLOOR)) - base
    return out


def _class_shares(
    vectors: IntArray,
    m: list[FloatArray],
    u: list[FloatArray],
    r: list[FloatArray],
    prior: float,
    related_prior: float,
    other_adjustment: FloatArray | float = 0.0,
) -> FloatArray:
    """E step: per pair, the posterior share of each class (rows: match, other, related)."""
    classes = [
        math.log(prior) + _log_likelihood(vectors, m),
        math.log(1.0 - prior - related_prior) + _log_likelihood(vectors, u) + other_adjustment,
    ]
    if related_prior > 0:
        classes.append(math.log(related_prior) + _log_likelihood(vectors, r))
    stacked = np.vstack(classes)
    stacked -= stacked.max(axis=0)
    shares: FloatArray = np.exp(stacked)
    shares /= shares.sum(axis=0)
    return shares


def estimate_em(
    pairs: Sequence[tuple[MatchRecord, MatchRecord]],
    model: MatchModel,
    max_iterations: int = 50,
    tolerance: float = 1e-4,
    *,
    population_size: int | None = None,
    pair_share: float = 1.0,
    fix_u: bool = True,
    pseudo_pairs: float = 10.0,
    estimate_priors: bool = True,
    hard_assignments: bool = True,
) -> MatchModel:
    """`model` with the priors, m and r re-estimated by EM on blocked candidate `pairs`.

    Two stages: first the priors, holding the level probabilities; then m and r (and u with
    `fix_u=False`, only sensible when u was not measured on random pairs), holding the priors.
    Estimating everything at once lets the match class grow into the many candidate pairs that
    merely share a common name (a known failure of unsupervised record linkage).

    For the same reason the second stage counts each pair for its most likely class only
    (classification EM, `hard_assignments`): with soft shares, thousands of namesakes that are
    each 10–30% "match" add up to a match class in which a different birth date, e-mail and
    address look normal, and the model stops telling namesakes from duplicates.

    `population_size` is the number of records in the register (the priors are per random pair);
    by default, the number of distinct record ids among the pairs. When `pairs` is a random
    sample of the blocked pairs, `pair_share` is its share of them (for the priors too). Every
    comparison's probabilities are pulled towards the starting model by `pseudo_pairs`
    pseudo-observations. `u` should come from `estimate_u` on the same register first.
    """
    if not pairs:
        return _with_levels(model)
    if not 0.0 < pair_share <= 1.0:
        raise ValueError("pair_share must be in (0, 1]")
    vectors = comparison_vectors(pairs, model)
    adjustment = _term_adjustments(pairs, vectors, model)
    population = population_size or len({r.id for pair in pairs for r in pair})
    total_pairs = max(population * (population - 1) / 2, float(len(pairs)))
    keys = list(model.comparisons)
    start_m = [_array(model, k, "m") for k in keys]
    start_r = [_array(model, k, "r") for k in keys]
    start_u = [_array(model, k, "u") for k in keys]
    m, r, u = [t.copy() for t in start_m], [t.copy() for t in start_r], [t.copy() for t in start_u]
    prior, related_prior = model.prior, model.related_prior
    use_related = related_prior > 0

    # At most one matching pair per record on average: a register whose records each have more
    # than one duplicate is not what EM is looking at, but a sign the u probabilities are off.
    max_prior = min(0.25, population / 2 / total_pairs)
    if estimate_priors:
        for _ in range(max_iterations * 4):
            shares = _class_shares(vectors, m, u, r, prior, related_prior, adjustment)
            matched = shares[0].sum() / pair_share
            new_prior = float(np.clip(matched / total_pairs, PROBABILITY_FLOOR, max_prior))
            new_related = (
                float(np.clip(shares[2].sum() / pair_share / total_pairs, PROBABILITY_FLOOR, 0.25))
                if use_related
                else 0.0
            )
            change = abs(new_prior - prior) / prior + (
                abs(new_related - related_prior) / related_prior if use_related else 0.0
            )
            prior, related_prior = new_prior, new_related
            if change < tolerance:
                break

    def recount(weights: FloatArray, start: list[FloatArray]) -> list[FloatArray]:
        out = []
        for col, base in enumerate(start):
            counts = _level_counts(vectors[:, col], weights, len(base)) + pseudo_pairs * base
            out.append(counts / counts.sum())
        return out

    for _ in range(max_iterations):
        shares = _class_shares(vectors, m, u, r, prior, related_prior, adjustment)
        if hard_assignments:
            shares = (shares == shares.max(axis=0)).astype(np.float64)
        new_m = recount(shares[0], start_m)
        new_r = recount(shares[2], start_r) if use_related else r
        new_u = u if fix_u else recount(shares[1], start_u)
        change = max(
            float(np.abs(a - b).max()) for a, b in zip(new_m + new_r + new_u, m + r + u, strict=True)
        )
        m, r, u = new_m, new_r, new_u
        if change < tolerance:
            break

    return _with_levels(
        model,
        m=dict(zip(keys, m, strict=True)),
        r=dict(zip(keys, r, strict=True)) if use_related else None,
        u=None if fix_u else dict(zip(keys, u, strict=True)),
        prior=prior,
        related_prior=related_prior,
    )


def fit(
    records: Sequence[MatchRecord],
    model: MatchModel | None = None,
    *,
    pairs: Sequence[tuple[MatchRecord, MatchRecord]] | None = None,
    sample_pairs: int = 200_000,
    seed: int = 0,
) -> MatchModel:
    """The whole unsupervised training in the right order: u from random pairs of `records`,
    then EM on the blocked candidate `pairs` (by default, those `candidate_pairs` finds)."""
    start = estimate_u(records, model or MatchModel.default(), sample_pairs=sample_pairs, seed=seed)
    if pairs is None:
        ordered = list(records)
        pairs = [(ordered[i], ordered[j]) for i, j in sorted(candidate_pairs(ordered))]
    return estimate_em(pairs, start, population_size=len(records))


# ----------------------------------------------------------------------------------------- labels


def tune_from_labels(
    model: MatchModel,
    labelled: Sequence[tuple[MatchRecord, MatchRecord, bool]],
    strength: float = 1.0,
    *,
    prior_pairs: float = 20.0,
) -> MatchModel:
    """`model` blended with reviewed pairs (a, b, same_person).

    Each reviewed pair counts `strength` observations against the model's `prior_pairs` per
    comparison. Matches update m; non-matches update r (u when the model has no related class).
    Priors are left alone: reviewed pairs are not a random sample of the register.
    """
    if not labelled:
        return _with_levels(model)
    pairs = [(a, b) for a, b, _ in labelled]
    same = np.array([label for _, _, label in labelled], dtype=np.float64)
    vectors = comparison_vectors(pairs, model)
    use_related = model.related_prior > 0
    new_m: dict[str, FloatArray] = {}
    new_other: dict[str, FloatArray] = {}
    for col, key in enumerate(model.comparisons):
        for weights, attribute, target in (
            (same, "m", new_m),
            (1.0 - same, "r" if use_related else "u", new_other),
        ):
            base = _array(model, key, attribute)
            counts = strength * _level_counts(vectors[:, col], weights, len(base)) + prior_pairs * base
            target[key] = counts / counts.sum()
    if use_related:
        return _with_levels(model, m=new_m, r=new_other)
    return _with_levels(model, m=new_m, u=new_other)
