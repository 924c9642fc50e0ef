"""Households' and organisation contacts' HTTP schemas."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from services.identity.households.domain import HouseholdRole


class MemberIn(BaseModel):
    """A person customer joining a household."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"customer_id": "6f1c2f1e-6a2b-4d7e-9c1a-1b2c3d4e5f60", "role": "child"}]
        },
    )

    customer_id: str = Field(min_length=1, max_length=36, description="The person customer")
    role: HouseholdRole = HouseholdRole.OTHER


class HouseholdCreate(BaseModel):
    """A household: a family of person customers. A person belongs to at most one household."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "García López",
                    "members": [
                        {"customer_id": "6f1c2f1e-6a2b-4d7e-9c1a-1b2c3d4e5f60", "role": "head"},
                        {"customer_id": "0b9e4d3c-2a1f-4e5d-8c7b-6a5f4e3d2c1b", "role": "partner"},
                    ],
                }
            ]
        },
    )

    name: str = Field(min_length=1, max_length=200)
    members: list[MemberIn] = Field(min_length=1, max_length=50)


class MemberOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    customer_id: str
    role: HouseholdRole
    joined_at: datetime


class HouseholdOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    members: list[MemberOut]
    created_at: datetime
    updated_at: datetime


class ContactIn(BaseModel):
    """A person customer who acts for the organisation, and in what role."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"customer_id": "6f1c2f1e-6a2b-4d7e-9c1a-1b2c3d4e5f60", "role": "Purchasing manager"}
            ]
        },
    )

    customer_id: str = Field(
        min_length=1,
        max_length=36,
        description="The person customer",
        examples=["6f1c2f1e-6a2b-4d7e-9c1a-1b2c3d4e5f60"],
    )
    role: str = Field(
        min_length=1, max_length=100, description="Role or job title", examples=["Purchasing manager"]
    )


class ContactOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    organisation_id: str
    customer_id: str = Field(validation_alias="person_id", description="The person customer")
    role: str
    created_at: datetime
