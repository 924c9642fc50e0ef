"""HTTP schemas of surveys."""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

from services.interactions.domain import Channel
from services.interactions.surveys import domain
from services.interactions.surveys.domain import AttributeGroup, NpsCategory
from services.interactions.surveys.models import SurveyRow


def _rating(group: AttributeGroup, name: str) -> int | None:
    # A field per catalogue attribute: an unknown name is refused as `body.ratings.<name>`, a value
    # outside 1–5 as `body.ratings.<name>` too, and the catalogue is in the OpenAPI document.
    return Field(
        default=None,
        ge=domain.RATING_MIN,
        le=domain.RATING_MAX,
        description=f"{group.value}: {domain.DESCRIPTIONS[name]} (1–5)",
    )


class AttributeScores(BaseModel):
    """Ratings of the catalogue's attributes, each 1 (very poor) to 5 (excellent); leave out (or set
    to null) what the customer did not rate. Groups — people: courtesy, competence; product:
    quality, price, variety; premises: cleanliness, comfort."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"courtesy": 5, "price": 3}]})

    courtesy: int | None = _rating(AttributeGroup.PEOPLE, "courtesy")
    competence: int | None = _rating(AttributeGroup.PEOPLE, "competence")
    quality: int | None = _rating(AttributeGroup.PRODUCT, "quality")
    price: int | None = _rating(AttributeGroup.PRODUCT, "price")
    variety: int | None = _rating(AttributeGroup.PRODUCT, "variety")
    cleanliness: int | None = _rating(AttributeGroup.PREMISES, "cleanliness")
    comfort: int | None = _rating(AttributeGroup.PREMISES, "comfort")

    def rated(self) -> dict[str, int]:
        """The attributes that were given a value, in catalogue order."""
        values = self.model_dump(exclude_none=True)
        return {name: values[name] for name in domain.CATALOGUE if name in values}


class SurveyCreate(BaseModel):
    """A customer's answers to a satisfaction survey. Give at least one of `csat`, `nps`, `ratings`."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "customer_id": "6f1c2f1e-6a2b-4d7e-9c1a-1b2c3d4e5f60",
                    "channel": "email",
                    "about_interaction_id": "0b7e4a3c-2d1f-4e5a-9b8c-7d6e5f4a3b2c",
                    "csat": 4,
                    "nps": 9,
                    "ratings": {"courtesy": 5, "competence": 4, "quality": 4, "price": 3},
                    "expectations": {"courtesy": 4, "price": 4},
                    "comment": "Friendly staff, a bit expensive.",
                    "answered_at": "2026-11-21T18:02:00Z",
                    "source_system": "survey-tool",
                    "idempotency_key": "response-88412",
                }
            ]
        },
    )

    customer_id: str = Field(min_length=1, max_length=36)
    channel: Channel = Field(description="Where the survey was answered (email, web, sms, phone, kiosk…)")
    about_interaction_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=36,
        description="The contact the survey followed (it must be this customer's)",
    )
    csat: int | None = Field(
        default=None, ge=domain.CSAT_MIN, le=domain.CSAT_MAX, description="Customer satisfaction, 1–5"
    )
    nps: int | None = Field(
        default=None,
        ge=domain.NPS_MIN,
        le=domain.NPS_MAX,
        description="How likely the customer is to recommend us, 0–10",
    )
    ratings: AttributeScores | None = Field(default=None, description="Perceived performance per attribute")
    expectations: AttributeScores | None = Field(
        default=None,
        description="What the customer expected, per attribute (1–5); each must also be rated, so that "
        "the answer can show performance against expectation",
    )
    comment: str | None = Field(default=None, max_length=5_000, description="Free text (personal data)")
    answered_at: AwareDatetime = Field(default_factory=lambda: datetime.now(UTC))
    source_system: str = Field(default="api", min_length=1, max_length=100)
    idempotency_key: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="The same key twice (per source system) records the survey once",
    )

    @field_validator("answered_at")
    @classmethod
    def _not_in_future(cls, value: datetime) -> datetime:
        if (value - datetime.now(UTC)).total_seconds() > 300:  # allow a little clock skew
            raise ValueError("answered_at is in the future")
        return value

    @model_validator(mode="after")
    def _answers_something(self) -> SurveyCreate:
        if self.csat is None and self.nps is None and not (self.ratings and self.ratings.rated()):
            raise ValueError("give at least one of csat, nps, ratings")
        return self


class Subtotal(BaseModel):
    score: int = Field(description="Sum of the ratings", examples=[16])
    maximum: int = Field(
        description="The most those ratings could sum to (5 per rated attribute)", examples=[20]
    )
    share: float = Field(description="score / maximum, in percent", examples=[80.0])


class AttributeOut(BaseModel):
    name: str = Field(examples=["courtesy"])
    group: AttributeGroup
    description: str
    minimum: int = Field(default=domain.RATING_MIN, description="The lowest rating (very poor)")
    maximum: int = Field(default=domain.RATING_MAX, description="The highest rating (excellent)")


class SurveyOut(BaseModel):
    id: str
    customer_id: str
    interaction_id: str = Field(description="The survey's own contact on the customer's timeline")
    about_interaction_id: str | None
    channel: str
    answered_at: datetime
    recorded_at: datetime
    csat: int | None
    nps: int | None
    nps_category: NpsCategory | None = Field(description="promoter (9–10), passive (7–8), detractor (0–6)")
    ratings: dict[str, int] = Field(examples=[{"courtesy": 5, "competence": 4, "quality": 4, "price": 3}])
    expectations: dict[str, int] = Field(examples=[{"courtesy": 4, "price": 4}])
    overall: Subtotal | None = Field(description="Sum over the rated attributes; null when none was rated")
    groups: dict[AttributeGroup, Subtotal] = Field(description="The overall score per attribute group")
    gaps: dict[str, int] = Field(
        description="Performance minus expectation per attribute with both: > 0 exceeded, < 0 fell short",
        examples=[{"courtesy": 1, "price": -1}],
    )
    comment: str | None
    source_system: str
    idempotency_key: str | None


class SurveyPage(BaseModel):
    items: list[SurveyOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next (older) page; null at the end")


class Catalogue(BaseModel):
    attributes: list[AttributeOut] = Field(description="In the order surveys show them")


def _subtotal(score: domain.Score) -> Subtotal:
    return Subtotal(score=score.score, maximum=score.maximum, share=round(score.share, 1))


def survey_out(row: SurveyRow) -> SurveyOut:
    """A stored survey as the API shows it: the overall score, its split by group and the gaps to
    expectation are derived from the stored ratings."""
    ratings = dict(row.ratings or {})
    expectations = dict(row.expectations or {})
    total = domain.overall(ratings)
    return SurveyOut(
        id=row.id,
        customer_id=row.customer_id,
        interaction_id=row.interaction_id,
        about_interaction_id=row.about_interaction_id,
        channel=row.channel,
        answered_at=row.answered_at,
        recorded_at=row.recorded_at,
        csat=row.csat,
        nps=row.nps,
        nps_category=NpsCategory(row.nps_category) if row.nps_category else None,
        ratings=ratings,
        expectations=expectations,
        overall=_subtotal(total) if total else None,
        groups={group: _subtotal(score) for group, score in domain.by_group(ratings).items()},
        gaps=domain.gaps(ratings, expectations),
        comment=row.comment,
        source_system=row.source_system,
        idempotency_key=row.idempotency_key,
    )
