"""Satisfaction rules, free of I/O: the attribute catalogue, the overall score, NPS.

Satisfaction is perceived performance against expectation. A survey rates attributes of the
experience on a 1–5 scale, grouped as people (courtesy, competence), product (quality, price,
variety) and premises (cleanliness, comfort); the overall score is the sum over the attributes that
were rated, shown against the most those attributes could score. CSAT (1–5) and NPS (0–10, "how
likely are you to recommend us") are asked alongside.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

RATING_MIN = 1
RATING_MAX = 5
CSAT_MIN, CSAT_MAX = 1, 5
NPS_MIN, NPS_MAX = 0, 10
PROMOTER_FROM = 9  # 9–10
DETRACTOR_UP_TO = 6  # 0–6; 7–8 are passives


class AttributeGroup(StrEnum):
    PEOPLE = "people"
    PRODUCT = "product"
    PREMISES = "premises"


# Every attribute a survey may rate, with its group; the order is the order surveys show them in.
CATALOGUE: dict[str, AttributeGroup] = {
    "courtesy": AttributeGroup.PEOPLE,
    "competence": AttributeGroup.PEOPLE,
    "quality": AttributeGroup.PRODUCT,
    "price": AttributeGroup.PRODUCT,
    "variety": AttributeGroup.PRODUCT,
    "cleanliness": AttributeGroup.PREMISES,
    "comfort": AttributeGroup.PREMISES,
}

DESCRIPTIONS: dict[str, str] = {
    "courtesy": "How politely and warmly the staff treated the customer",
    "competence": "Whether the staff knew what they were doing and solved the need",
    "quality": "Quality of the product or service received",
    "price": "Price for what was received (value for money)",
    "variety": "Range and choice of products on offer",
    "cleanliness": "Cleanliness of the store, branch or site",
    "comfort": "Comfort of the premises: space, waiting, accessibility",
}


class NpsCategory(StrEnum):
    PROMOTER = "promoter"
    PASSIVE = "passive"
    DETRACTOR = "detractor"


def nps_category(score: int) -> NpsCategory:
    """9–10 promoter, 7–8 passive, 0–6 detractor."""
    if not NPS_MIN <= score <= NPS_MAX:
        raise ValueError(f"an NPS answer is {NPS_MIN} to {NPS_MAX}, not {score}")
    if score >= PROMOTER_FROM:
        return NpsCategory.PROMOTER
    if score <= DETRACTOR_UP_TO:
        return NpsCategory.DETRACTOR
    return NpsCategory.PASSIVE


def net_promoter_score(promoters: int, detractors: int, responses: int) -> float | None:
    """% promoters − % detractors, from −100 to 100; None when nobody answered."""
    if responses <= 0:
        return None
    if promoters < 0 or detractors < 0 or promoters + detractors > responses:
        raise ValueError("promoters and detractors are part of the responses")
    return 100.0 * (promoters - detractors) / responses


def nps_of(scores: Iterable[int]) -> float | None:
    """The NPS of a set of 0–10 answers."""
    categories = [nps_category(score) for score in scores]
    return net_promoter_score(
        categories.count(NpsCategory.PROMOTER), categories.count(NpsCategory.DETRACTOR), len(categories)
    )


@dataclass(frozen=True, slots=True)
class Score:
    """A sum of ratings and the most those ratings could have summed to."""

    score: int
    maximum: int

    @property
    def share(self) -> float:
        """The score as a percentage of the maximum."""
        return 100.0 * self.score / self.maximum


def check_ratings(ratings: Mapping[str, int]) -> None:
    """Every rated attribute is in the catalogue and rated 1–5 (ValueError naming it otherwise)."""
    for name, value in ratings.items():
        if name not in CATALOGUE:
            raise ValueError(f"unknown attribute {name!r}")
        if not RATING_MIN <= value <= RATING_MAX:
            raise ValueError(f"{name} is rated {RATING_MIN} to {RATING_MAX}, not {value}")


def overall(ratings: Mapping[str, int]) -> Score | None:
    """The overall satisfaction: the sum over the rated attributes, out of 5 per rated attribute.
    None when nothing was rated."""
    check_ratings(ratings)
    if not ratings:
        return None
    return Score(sum(ratings.values()), RATING_MAX * len(ratings))


def by_group(ratings: Mapping[str, int]) -> dict[AttributeGroup, Score]:
    """The overall score split by group (people, product, premises), for the groups that were rated."""
    check_ratings(ratings)
    sums: dict[AttributeGroup, Score] = {}
    for name in CATALOGUE:  # catalogue order, so the answer reads the same every time
        if name in ratings:
            group = CATALOGUE[name]
            before = sums.get(group, Score(0, 0))
            sums[group] = Score(before.score + ratings[name], before.maximum + RATING_MAX)
    return sums


def gaps(ratings: Mapping[str, int], expectations: Mapping[str, int]) -> dict[str, int]:
    """Perceived performance minus expectation, per attribute that has both: above zero the
    experience beat what the customer expected, below zero it fell short."""
    check_ratings(ratings)
    check_ratings(expectations)
    return {
        name: ratings[name] - expectations[name]
        for name in CATALOGUE
        if name in ratings and name in expectations
    }
