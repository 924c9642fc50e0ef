"""Attribute definitions' HTTP schemas."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationInfo, field_validator

from services.identity.attributes.domain import INT64_MAX, INT64_MIN, MAX_STRING_LENGTH, AttributeType

EnumValue = Annotated[str, StringConstraints(min_length=1, max_length=100)]
Int64 = Annotated[int, Field(ge=INT64_MIN, le=INT64_MAX)]

_NUMERIC = {AttributeType.INTEGER, AttributeType.DECIMAL_MINOR}


class AttributeDefinitionIn(BaseModel):
    """A custom profile attribute. The name is in the path; this body replaces its definition."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"type": "enum", "enum_values": ["bronze", "silver", "gold"], "description": "Customer club"},
                {"type": "integer", "min_value": 0, "max_value": 20, "description": "Number of children"},
                {"type": "string", "max_length": 80, "required": True, "description": "Favourite store"},
                {"type": "decimal_minor", "min_value": 0, "description": "Declared yearly budget in cents"},
            ]
        },
    )

    type: AttributeType
    required: bool = Field(
        default=False, description="A profile must carry it (checked on create and replace)"
    )
    description: str | None = Field(default=None, max_length=1000)
    enum_values: list[EnumValue] | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        validate_default=True,
        description="The allowed values; required for (and only for) type `enum`",
    )
    max_length: int | None = Field(
        default=None,
        ge=1,
        le=MAX_STRING_LENGTH,
        validate_default=True,
        description=f"Longest allowed string (type `string` only; {MAX_STRING_LENGTH} when not given)",
    )
    min_value: Int64 | None = Field(
        default=None, validate_default=True, description="Smallest allowed value (`integer`, `decimal_minor`)"
    )
    max_value: Int64 | None = Field(
        default=None, validate_default=True, description="Largest allowed value (`integer`, `decimal_minor`)"
    )

    @field_validator("enum_values")
    @classmethod
    def _enum_values(cls, value: list[str] | None, info: ValidationInfo) -> list[str] | None:
        kind = info.data.get("type")
        if kind is None:
            return value
        if kind is AttributeType.ENUM and value is None:
            raise ValueError("an enum attribute needs its enum_values")
        if kind is not AttributeType.ENUM and value is not None:
            raise ValueError("only enum attributes have enum_values")
        if value is not None and len(set(value)) != len(value):
            raise ValueError("enum_values must be distinct")
        return value

    @field_validator("max_length")
    @classmethod
    def _max_length(cls, value: int | None, info: ValidationInfo) -> int | None:
        kind = info.data.get("type")
        if value is not None and kind is not None and kind is not AttributeType.STRING:
            raise ValueError("only string attributes have a max_length")
        return value

    @field_validator("min_value", "max_value")
    @classmethod
    def _bounds(cls, value: int | None, info: ValidationInfo) -> int | None:
        kind = info.data.get("type")
        if value is not None and kind is not None and kind not in _NUMERIC:
            raise ValueError("only integer and decimal_minor attributes have bounds")
        low = info.data.get("min_value")
        if info.field_name == "max_value" and value is not None and low is not None and value < low:
            raise ValueError("max_value must not be less than min_value")
        return value


class AttributeDefinitionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    name: str = Field(examples=["club_level"])
    type: AttributeType
    required: bool
    description: str | None
    enum_values: list[str] | None
    max_length: int | None
    min_value: int | None
    max_value: int | None
    created_at: datetime
    updated_at: datetime
