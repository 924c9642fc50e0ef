"""Identity's HTTP schemas: what clients send and what they get back."""

from __future__ import annotations

from datetime import datetime
from typing import Self

from pydantic import BaseModel, ConfigDict, EmailStr, Field, model_validator

from shared.contracts.identity import CustomerKind, CustomerStatus


class CustomerCreate(BaseModel):
    """A new customer: a person (given/family name) or an organisation (organisation name)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "kind": "person",
                    "given_name": "Ana",
                    "family_name": "García",
                    "email": "ana@example.com",
                    "phone": "+34 612 345 678",
                    "language": "es",
                    "source_system": "web",
                }
            ]
        },
    )

    kind: CustomerKind = "person"
    status: CustomerStatus = "prospect"
    given_name: str | None = Field(default=None, min_length=1, max_length=200)
    family_name: str | None = Field(default=None, min_length=1, max_length=200)
    organisation_name: str | None = Field(default=None, min_length=1, max_length=300)
    email: EmailStr | None = None
    phone: str | None = Field(default=None, min_length=3, max_length=32)
    language: str | None = Field(default=None, min_length=2, max_length=16, examples=["es"])
    source_system: str | None = Field(default=None, max_length=100, examples=["web"])

    @model_validator(mode="after")
    def _named(self) -> Self:
        if self.kind == "organisation" and not self.organisation_name:
            raise ValueError("organisation_name is required for an organisation")
        if self.kind == "person" and not (self.given_name or self.family_name):
            raise ValueError("a person needs given_name or family_name")
        return self


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
    created_at: datetime
    updated_at: datetime
    version: int
