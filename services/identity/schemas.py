"""Identity's HTTP schemas: what clients send and what they get back.

What a source system may send (`SourceRecordIn`) differs from what staff may edit
(`CustomerPatch`): neither can set a customer's merge state, id or version.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal, Self

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

from shared.contracts.identity import CustomerKind, CustomerStatus

Gender = Literal["female", "male", "non_binary", "unknown"]
Outcome = Literal["created", "matched", "updated", "review"]

PERSON_EXAMPLE: dict[str, Any] = {
    "source_system": "web",
    "source_id": "signup-88121",
    "kind": "person",
    "given_name": "Ana",
    "family_name": "García",
    "email": "ana.garcia@example.com",
    "phone": "+34 612 345 678",
    "birth_date": "1988-04-12",
    "language": "es",
    "addresses": [
        {
            "street_number": "12",
            "street": "Calle Mayor",
            "locality": "Madrid",
            "postcode": "28013",
            "region": "Madrid",
            "country": "ES",
        }
    ],
    "external_ids": {"shopify": "7712"},
    "verified": ["email"],
}


def _holds_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_holds_nul(k) or _holds_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_holds_nul(v) for v in value)
    return False


class _Text(BaseModel):
    """Refuses a NUL character anywhere in a field (nested values included): no PostgreSQL text can
    hold one, so it would otherwise fail only when stored — a 500, or a whole import lost."""

    @field_validator("*", mode="before")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        if _holds_nul(value):
            raise ValueError("must not contain a NUL character (\\u0000)")
        return value


class Address(_Text):
    model_config = ConfigDict(extra="forbid")

    street_number: str | None = Field(default=None, max_length=20)
    street: str | None = Field(default=None, max_length=200)
    locality: str | None = Field(default=None, max_length=120, description="City or town")
    postcode: str | None = Field(default=None, max_length=20)
    region: str | None = Field(default=None, max_length=120)
    country: str | None = Field(default=None, pattern=r"^[A-Z]{2}$", description="ISO 3166-1 alpha-2")
    kind: Literal["home", "work", "billing", "shipping", "other"] = "home"


class ProfileFields(_Text):
    """Profile fields a record can carry. All optional: sources know different things."""

    model_config = ConfigDict(extra="forbid")

    given_name: str | None = Field(default=None, min_length=1, max_length=200)
    family_name: str | None = Field(default=None, min_length=1, max_length=200)
    organisation_name: str | None = Field(default=None, min_length=1, max_length=300)
    email: str | None = Field(default=None, max_length=320)
    phone: str | None = Field(default=None, max_length=40)
    birth_date: date | None = None
    gender: Gender | None = None
    language: str | None = Field(default=None, pattern=r"^[a-z]{2,3}(-[A-Z]{2})?$", examples=["es", "en-GB"])
    national_id: str | None = Field(default=None, max_length=64, description="National or tax id")
    addresses: list[Address] | None = Field(default=None, max_length=20)
    branch_id: str | None = Field(default=None, max_length=64, description="Assigned branch or store")
    card_number: str | None = Field(
        default=None, max_length=64, description="A loyalty card the record carries"
    )
    external_ids: dict[str, str] | None = Field(default=None, description="Ids in other systems, per system")
    attributes: dict[str, Any] | None = Field(
        default=None, description="Validated against the attribute schema"
    )

    @model_validator(mode="after")
    def _plausible_birth_date(self) -> Self:
        if self.birth_date is not None:
            today = date.today()
            if self.birth_date > today:
                raise ValueError("birth_date is in the future")
            if self.birth_date.year < today.year - 130:
                raise ValueError("birth_date is more than 130 years ago")
        return self


class SourceRecordIn(ProfileFields):
    """A customer record as a source system holds it. The same (source_system, source_id) again
    updates that record rather than adding another."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [PERSON_EXAMPLE]})

    source_system: str = Field(default="api", min_length=1, max_length=100, pattern=r"^[a-z0-9_.-]+$")
    source_id: str | None = Field(default=None, min_length=1, max_length=200)
    kind: CustomerKind = "person"
    status: CustomerStatus = "prospect"
    verified: list[str] = Field(
        default_factory=list, description="Fields the source verified (never overwritten)"
    )
    observed_at: AwareDatetime | None = Field(
        default=None, description="When the data was known true; default now"
    )

    @model_validator(mode="after")
    def _named(self) -> Self:
        if self.kind == "organisation" and not self.organisation_name:
            raise ValueError("organisation_name is required for an organisation")
        if self.kind == "person" and not (self.given_name or self.family_name):
            raise ValueError("a person needs given_name or family_name")
        unknown = set(self.verified) - set(ProfileFields.model_fields)
        if unknown:
            raise ValueError(f"verified names unknown fields: {', '.join(sorted(unknown))}")
        return self


class CustomerCreate(SourceRecordIn):
    """Register a customer (a source record from the API, matched like any other)."""


class CustomerPatch(ProfileFields):
    """What staff may change on a golden record. Recorded as the `staff` source, the most trusted."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"phone": "+34 699 000 111"}]})

    status: CustomerStatus | None = None
    verified: list[str] = Field(default_factory=list)
    reason: str | None = Field(default=None, max_length=500, description="Why (kept in the audit trail)")


class CustomerOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    kind: CustomerKind
    status: CustomerStatus
    given_name: str | None
    family_name: str | None
    organisation_name: str | None
    email: str | None
    phone: str | None
    language: str | None
    source_system: str | None
    birth_date: date | None
    gender: str | None
    national_id: str | None
    branch_id: str | None
    addresses: list[dict[str, Any]]
    external_ids: dict[str, list[str]]
    attributes: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    version: int
    resolved_from: str | None = Field(
        default=None, description="The id asked for, when it was merged into this one"
    )


class FieldEvidenceOut(BaseModel):
    field: str
    level: str
    weight: float
    left: str | None
    right: str | None


class MatchOut(BaseModel):
    outcome: Outcome
    probability: float | None = Field(
        default=None,
        description="The best candidate's match probability; null when no candidate came near the "
        "review threshold (such candidates are not scored in full: they could change nothing)",
    )
    candidate_id: str | None = Field(
        default=None, description="The customer it was compared with best (null as for `probability`)"
    )
    review_id: str | None = None
    evidence: list[FieldEvidenceOut] = Field(
        default_factory=list, description="Field by field, why the best candidate scored as it did"
    )


class IngestOut(BaseModel):
    customer: CustomerOut
    source_record_id: str
    match: MatchOut


class SourceRecordOut(BaseModel):
    id: str
    customer_id: str
    origin_customer_id: str
    source_system: str
    source_id: str
    kind: str
    data: dict[str, Any]
    trust: int
    verified: list[str]
    observed_at: datetime
    received_at: datetime


class LineageOut(BaseModel):
    customer_id: str
    member_ids: list[str] = Field(description="This customer and every id merged into it")
    records: list[SourceRecordOut]
    provenance: dict[str, Any] = Field(
        description="For each field: which source record won and by which rule"
    )
    merges: list[MergeOut]


class MergeOut(BaseModel):
    id: str
    survivor_id: str
    absorbed_id: str
    method: str
    score: float | None
    evidence: list[dict[str, Any]]
    actor: str | None
    reason: str | None
    created_at: datetime
    undone_at: datetime | None


class MergeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    other_id: str = Field(
        description="The customer to merge into this one", examples=["5b1f0c9e-2d4a-4f8e-9c3b-7a6d5e4f3a21"]
    )
    reason: str | None = Field(default=None, max_length=500, examples=["Same person: confirmed by phone"])


class UnmergeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    merge_id: str = Field(
        description="The merge to undo (from the lineage)", examples=["1c7e2b90-6f3d-4a8b-b1e2-9d0c4f5a6e73"]
    )
    reason: str | None = Field(default=None, max_length=500, examples=["Different people sharing an e-mail"])


class ReviewOut(BaseModel):
    id: str
    status: str
    probability: float
    reason: str
    evidence: list[dict[str, Any]]
    created_at: datetime
    decided_at: datetime | None
    decided_by: str | None
    left: CustomerOut | None
    right: CustomerOut | None


class ReviewDecision(BaseModel):
    model_config = ConfigDict(extra="forbid")

    decision: Literal["merge", "keep_apart"] = Field(examples=["keep_apart"])
    reason: str | None = Field(
        default=None, max_length=500, examples=["Twins: same address, different birth dates"]
    )


class ResolvedRecordOut(BaseModel):
    source_system: str
    source_id: str
    source_record_id: str
    customer_id: str


class SearchPage(BaseModel):
    items: list[CustomerOut]
    next_cursor: str | None


class ChangeOut(BaseModel):
    id: int
    customer_id: str
    actor: str
    cause: str
    reason: str | None
    before: dict[str, Any]
    after: dict[str, Any]
    changed_at: datetime


LineageOut.model_rebuild()
