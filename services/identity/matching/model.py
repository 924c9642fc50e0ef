"""The match model: per comparison level, how likely it is among matches and among non-matches.

Fellegi–Sunter (1969) in brief: two records are compared field by field, each comparison landing
on one level (`comparisons.py`). A level has an m probability (how often it occurs when the
records are the same person) and a u probability (how often it occurs for two records drawn at
random from the register). Its weight, log2(m/u), is the evidence it brings in bits: + for
agreement that is rare by chance, − for disagreement that is rare among true matches. With the
prior odds the weights add up to the posterior log-odds that the pair is a match.

Adding weights assumes the fields are independent given the class, which fails for one case that
matters most in a customer register: relatives. Members of one household share the family name,
the address, often the landline and sometimes the e-mail, so under plain Fellegi–Sunter a mother
and her son who share an e-mail look like a near-certain duplicate. So, as in Winkler's three-class
model for household data, the model has a third class, *related non-matches* (different people
of one household or family), with its own level probabilities r. The posterior odds are

    prior · Π m  /  (related_prior · Π r  +  (1 − prior − related_prior) · Π u)

which is plain Fellegi–Sunter whenever the pair does not look like relatives (the second term
dominates the denominator), and which stops a shared e-mail or address from outweighing a
different given name and birth date when it does. A level whose r is None uses u.

`prior` and `related_prior` are probabilities for two records drawn at random from the whole
register (not among blocked candidates), matching how u is defined: then a score does not depend
on which blocking key brought the pair together. For a register of N records where a share d of
records has a duplicate, prior ≈ d / N; `with_register` sets both from such figures.

Term frequencies: agreeing exactly on `garcia` is weaker evidence than agreeing on `zubizarreta`,
so for given and family names the u of an exact agreement can be the share of records holding
that very value (`term_frequencies`, counted by `estimate_u`) instead of the level's average.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from services.identity.matching.comparisons import LEVELS, TERM_FIELDS

PROBABILITY_FLOOR = 1e-12

# Bumped whenever an attribute of any `ComparisonLevel` or `Comparison` is set (construction
# included), so that what `score` precomputes from a model's levels is rebuilt after a change.
# Changing a `levels` list or a model's `comparisons` dict in place is not noticed: replace them.
_generation = 0


def generation() -> int:
    """The current value of the level-change counter (see `_generation`)."""
    return _generation


def _touch() -> None:
    global _generation
    _generation += 1


@dataclass
class ComparisonLevel:
    """One outcome of a comparison with its probability among matches (m), random pairs (u)
    and related non-matches (r; None means the same as u)."""

    name: str
    m: float
    u: float
    r: float | None = None

    def __setattr__(self, name: str, value: Any) -> None:
        _touch()
        object.__setattr__(self, name, value)

    @property
    def weight(self) -> float:
        """Fellegi–Sunter match weight in bits: log2(m / u)."""
        return math.log2(max(self.m, PROBABILITY_FLOOR) / max(self.u, PROBABILITY_FLOOR))

    @property
    def related(self) -> float:
        """r, or u when the level says nothing particular about relatives."""
        return self.u if self.r is None else self.r

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "m": self.m, "u": self.u}
        if self.r is not None:
            out["r"] = self.r
        return out


@dataclass
class Comparison:
    """A field's levels, from the strongest agreement to the last, catch-all `else` level."""

    field: str
    levels: list[ComparisonLevel]

    def __setattr__(self, name: str, value: Any) -> None:
        _touch()
        object.__setattr__(self, name, value)

    def level(self, name: str) -> ComparisonLevel:
        for level in self.levels:
            if level.name == name:
                return level
        raise KeyError(f"comparison {self.field!r} has no level {name!r}")

    def index(self, name: str) -> int:
        for i, level in enumerate(self.levels):
            if level.name == name:
                return i
        raise KeyError(f"comparison {self.field!r} has no level {name!r}")


@dataclass
class MatchModel:
    """Priors and comparisons; see the module documentation for what the numbers mean."""

    prior: float
    comparisons: dict[str, Comparison]
    related_prior: float = 0.0
    # Per comparison in TERM_FIELDS: value -> share of records with it (see `term_u`).
    term_frequencies: dict[str, dict[str, float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 0.0 < self.prior < 1.0:
            raise ValueError("prior must be between 0 and 1")
        if not 0.0 <= self.related_prior < 1.0 - self.prior:
            raise ValueError("related_prior must be between 0 and 1 - prior")
        for key, comparison in self.comparisons.items():
            known = LEVELS.get(key)
            if known is None:
                raise ValueError(f"no comparison function for {key!r}")
            names = tuple(level.name for level in comparison.levels)
            if set(names) != set(known):
                raise ValueError(f"comparison {key!r} must have levels {known}, not {names}")
        for key in self.term_frequencies:
            if key not in TERM_FIELDS:
                raise ValueError(f"no term frequencies for {key!r}: only for {TERM_FIELDS}")

    def term_u(self, key: str, value: str | None, level: ComparisonLevel) -> float:
        """u for exact agreement on this particular `value`: how often a random record has it.

        Agreeing on `garcia` is weaker evidence than agreeing on `zubizarreta`; the level's u is
        the average over all values. Values the table does not know keep the level's u.
        """
        table = self.term_frequencies.get(key)
        if not table or value is None:
            return level.u
        return table.get(value, level.u)

    @property
    def prior_weight(self) -> float:
        """The prior log-odds in bits: log2(prior / (1 - prior - related_prior))."""
        return math.log2(self.prior / (1.0 - self.prior - self.related_prior))

    def with_register(self, records: int, duplicate_share: float, related_share: float = 0.3) -> MatchModel:
        """A copy with priors for a register of `records` records, a share of which have a
        duplicate and a share of which have a relative (same household) in the register."""
        pairs = records * (records - 1) / 2
        prior = min(max(duplicate_share * records / 2 / pairs, PROBABILITY_FLOOR), 0.5)
        related = min(max(related_share * records / 2 / pairs, PROBABILITY_FLOOR), 0.5 - prior)
        return MatchModel(
            prior=prior,
            comparisons=self.comparisons,
            related_prior=related,
            term_frequencies=self.term_frequencies,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "prior": self.prior,
            "related_prior": self.related_prior,
            "comparisons": {
                key: [level.to_json() for level in comparison.levels]
                for key, comparison in self.comparisons.items()
            },
            "term_frequencies": self.term_frequencies,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> MatchModel:
        comparisons = {
            key: Comparison(
                field=key,
                levels=[
                    ComparisonLevel(
                        name=str(level["name"]),
                        m=float(level["m"]),
                        u=float(level["u"]),
                        r=None if level.get("r") is None else float(level["r"]),
                    )
                    for level in levels
                ],
            )
            for key, levels in data["comparisons"].items()
        }
        return cls(
            prior=float(data["prior"]),
            comparisons=comparisons,
            related_prior=float(data.get("related_prior", 0.0)),
            term_frequencies={
                key: {str(value): float(share) for value, share in table.items()}
                for key, table in (data.get("term_frequencies") or {}).items()
            },
        )

    @classmethod
    def default(cls, comparisons: Iterable[str] | None = None) -> MatchModel:
        """Hand-set probabilities that work on realistic data without training (see `_DEFAULTS`),
        for `comparisons` (default: `DEFAULT_COMPARISONS`)."""
        keys = DEFAULT_COMPARISONS if comparisons is None else tuple(comparisons)
        return cls(
            prior=DEFAULT_PRIOR,
            related_prior=DEFAULT_RELATED_PRIOR,
            comparisons={
                key: Comparison(key, [ComparisonLevel(name, m, u, r) for name, m, u, r in _DEFAULTS[key]])
                for key in keys
            },
        )


# A register of some tens of thousands of records with one in ten duplicated, and about as many
# pairs of relatives as duplicates. `with_register` or `estimate_em` adapt them to a real register.
DEFAULT_PRIOR = 5e-6
DEFAULT_RELATED_PRIOR = 5e-6

# (level, m, u, r) per comparison. u: chance agreement of two random customers (given names
# repeat far more than e-mails); m: how often true duplicates still agree (people move, change
# e-mail and phone, typos happen); r: relatives — same family name and home, sometimes the same
# landline or e-mail, rarely the same given name or birth date (twins, junior/senior).
_DEFAULTS: dict[str, list[tuple[str, float, float, float | None]]] = {
    "given_name": [
        ("exact", 0.87, 0.01, 0.02),
        ("swapped", 0.02, 1e-6, 1e-4),
        ("close", 0.07, 0.004, 0.01),
        ("similar", 0.02, 0.03, 0.04),
        ("else", 0.02, 0.955999, 0.9299),
    ],
    "family_name": [
        ("exact", 0.88, 0.005, 0.80),
        ("close", 0.08, 0.003, 0.02),
        ("token", 0.02, 0.0005, 0.06),
        ("similar", 0.01, 0.02, 0.02),
        ("else", 0.01, 0.9715, 0.10),
    ],
    "organisation_name": [
        ("exact", 0.80, 1e-4, 0.30),
        ("ts90", 0.10, 5e-4, 0.20),
        ("ts75", 0.05, 0.005, 0.20),
        ("else", 0.05, 0.9944, 0.30),
    ],
    "email": [
        ("exact", 0.60, 2e-6, 0.25),
        ("local", 0.03, 1e-5, 0.002),
        ("jw90", 0.07, 0.002, 0.05),
        ("else", 0.30, 0.997988, 0.698),
    ],
    "phone": [
        ("exact", 0.62, 2e-6, 0.30),
        ("last8", 0.03, 1e-6, 0.002),
        ("typo", 0.05, 1e-5, 0.003),
        ("else", 0.30, 0.999987, 0.695),
    ],
    "birth_date": [
        ("exact", 0.90, 6e-5, 0.015),
        ("transposed", 0.02, 3e-6, 0.001),
        ("close", 0.05, 0.004, 0.03),
        ("else", 0.03, 0.995937, 0.954),
    ],
    "address": [
        ("exact", 0.60, 5e-5, 0.80),
        ("postcode", 0.07, 0.001, 0.05),
        ("street", 0.03, 1e-4, 0.01),
        ("area", 0.05, 0.03, 0.04),
        ("else", 0.25, 0.96885, 0.10),
    ],
    "postcode": [
        ("exact", 0.70, 0.001, 0.85),
        ("prefix", 0.05, 0.01, 0.03),
        ("else", 0.25, 0.989, 0.12),
    ],
    "city": [
        ("jw90", 0.80, 0.05, 0.90),
        ("else", 0.20, 0.95, 0.10),
    ],
    "street": [
        ("ts90", 0.65, 5e-4, 0.80),
        ("ts70", 0.10, 0.005, 0.05),
        ("else", 0.25, 0.9945, 0.15),
    ],
    "national_id": [
        ("exact", 0.95, 1e-8, 1e-4),
        ("typo", 0.03, 1e-7, 1e-4),
        ("else", 0.02, 0.99999989, 0.9998),
    ],
    "gender": [
        ("same", 0.97, 0.5, 0.5),
        ("else", 0.03, 0.5, 0.5),
    ],
}

# The comparisons a default model uses: address replaces postcode, city and street.
DEFAULT_COMPARISONS = tuple(k for k in _DEFAULTS if k not in {"postcode", "city", "street"})
