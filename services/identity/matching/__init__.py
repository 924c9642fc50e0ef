"""Record matching for the identity service: is this incoming customer one we already know?

Pure domain code (no I/O, no database, no web framework), in four steps:

1. **Normalise** (`normalise.py`): one spelling per identifier — e-mails lowercased with Gmail
   dots and `+tags` dropped, phones in E.164, names without accents or punctuation — and
   placeholders (`test@test.com`, `000000000`, `n/a`) recognised so they never count as evidence.
   `MatchRecord.from_raw` does all of it.
2. **Block** (`blocking.py`): a handful of keys per record (same e-mail, same phone, name sound +
   birth date, postcode + name sound, …) chosen so that a duplicate keeps at least one key through
   typos, nicknames, swapped names, a move or a new e-mail. Only records sharing a key are scored.
3. **Score** (`comparisons.py`, `model.py`, `scoring.py`): Fellegi–Sunter. Each field comparison
   lands on a level (exact, nickname, Jaro-Winkler ≥ 0.92, …, else); each level's weight
   log2(m/u) is its evidence in bits; a missing value is a null outcome worth 0. A third class of
   *related non-matches* (Winkler's household model) keeps a shared family e-mail or address from
   outweighing a different given name and birth date. The result is the posterior log-odds, a
   probability and the evidence field by field.
4. **Learn** (`estimation.py`): u from random pairs, m/r/priors by EM on candidate pairs without
   labels (`fit` runs both in order), and a Bayesian blend with reviewers' decisions.
   `MatchModel.default()` already works without any of it.

README.md beside this file has the figures (accuracy on synthetic data, time per score).

Typical use::

    model = MatchModel.default()
    incoming = MatchRecord.from_raw("new", given_name="Bob", family_name="Smith", email="...")
    candidates = repository.records_sharing_any(blocking_keys(incoming))  # the caller's I/O
    best = best_match(incoming, candidates, model)
    if best and best[1].probability >= 0.99: ...  # merge; >= 0.8: send to review
"""

from services.identity.matching.blocking import blocking_keys, candidate_pairs, phonetic
from services.identity.matching.comparisons import LEVEL_FUNCTIONS, LEVELS
from services.identity.matching.estimation import (
    comparison_vectors,
    estimate_em,
    estimate_u,
    fit,
    tune_from_labels,
)
from services.identity.matching.model import (
    DEFAULT_COMPARISONS,
    Comparison,
    ComparisonLevel,
    MatchModel,
)
from services.identity.matching.normalise import (
    InvalidIdentifier,
    is_placeholder,
    nickname_canonical,
    normalise_email,
    normalise_gender,
    normalise_name,
    normalise_national_id,
    normalise_phone,
    normalise_postcode,
    normalise_street,
)
from services.identity.matching.record import MatchRecord
from services.identity.matching.scoring import FieldEvidence, MatchResult, best_match, probability, score

__all__ = [
    "DEFAULT_COMPARISONS",
    "LEVELS",
    "LEVEL_FUNCTIONS",
    "Comparison",
    "ComparisonLevel",
    "FieldEvidence",
    "InvalidIdentifier",
    "MatchModel",
    "MatchRecord",
    "MatchResult",
    "best_match",
    "blocking_keys",
    "candidate_pairs",
    "comparison_vectors",
    "estimate_em",
    "estimate_u",
    "fit",
    "is_placeholder",
    "nickname_canonical",
    "normalise_email",
    "normalise_gender",
    "normalise_name",
    "normalise_national_id",
    "normalise_phone",
    "normalise_postcode",
    "normalise_street",
    "phonetic",
    "probability",
    "score",
    "tune_from_labels",
]
