"""Custom attribute values are checked against their definitions, and every refusal names the field."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from services.identity.attributes.domain import (
    AttributeSpec,
    AttributeType,
    InvalidAttributes,
    validate_attributes,
)
from services.identity.attributes.schemas import AttributeDefinitionIn
from shared.errors import InvalidInput

DEFINITIONS = {
    spec.name: spec
    for spec in [
        AttributeSpec("favourite_store", AttributeType.STRING, max_length=10),
        AttributeSpec("bio", AttributeType.STRING),
        AttributeSpec("children", AttributeType.INTEGER, min_value=0, max_value=20),
        AttributeSpec("newsletter_reader", AttributeType.BOOLEAN),
        AttributeSpec("anniversary", AttributeType.DATE),
        AttributeSpec("club_level", AttributeType.ENUM, enum_values=("bronze", "silver", "gold")),
        AttributeSpec("yearly_budget", AttributeType.DECIMAL_MINOR, min_value=0),
        AttributeSpec("segment_code", AttributeType.STRING, required=True),
    ]
}


def fields_of(error: InvalidInput) -> list[str]:
    return [e.field for e in error.errors]


class TestValidValues:
    def test_every_type_is_accepted_and_normalised(self) -> None:
        values: dict[str, Any] = {
            "favourite_store": "Madrid 1",
            "children": 2,
            "newsletter_reader": False,
            "anniversary": "2019-06-01",
            "club_level": "gold",
            "yearly_budget": 150_000,
            "segment_code": "A1",
        }
        assert validate_attributes(DEFINITIONS, values, partial=False) == values

    def test_a_date_object_is_stored_as_iso_text(self) -> None:
        out = validate_attributes(DEFINITIONS, {"anniversary": date(2020, 2, 29)}, partial=True)
        assert out == {"anniversary": "2020-02-29"}

    def test_partial_updates_may_leave_required_attributes_out(self) -> None:
        assert validate_attributes(DEFINITIONS, {"children": 0}, partial=True) == {"children": 0}

    def test_null_clears_an_optional_attribute(self) -> None:
        assert validate_attributes(DEFINITIONS, {"bio": None}, partial=True) == {"bio": None}

    def test_bounds_are_inclusive(self) -> None:
        assert validate_attributes(DEFINITIONS, {"children": 20}, partial=True) == {"children": 20}

    def test_definitions_may_be_given_as_a_list(self) -> None:
        out = validate_attributes(list(DEFINITIONS.values()), {"children": 1}, partial=True)
        assert out == {"children": 1}


class TestRefusals:
    @pytest.mark.parametrize(
        ("name", "value", "message"),
        [
            ("shoe_size", 42, "unknown attribute"),
            ("favourite_store", 7, "must be a string"),
            ("favourite_store", "x" * 11, "must be at most 10 characters"),
            ("bio", "x" * 10_001, "must be at most 10000 characters"),
            ("children", "2", "must be an integer"),
            ("children", 2.0, "must be an integer"),
            ("children", True, "must be an integer"),
            ("children", -1, "must be at least 0"),
            ("children", 21, "must be at most 20"),
            ("newsletter_reader", "yes", "must be true or false"),
            ("newsletter_reader", 1, "must be true or false"),
            ("anniversary", "01/06/2019", "must be a date (YYYY-MM-DD)"),
            ("anniversary", "2019-02-30", "must be a date (YYYY-MM-DD)"),
            ("anniversary", datetime(2019, 6, 1, 10, 0), "must be a date (YYYY-MM-DD)"),
            ("club_level", "platinum", "must be one of: bronze, silver, gold"),
            ("club_level", 1, "must be one of: bronze, silver, gold"),
            ("yearly_budget", 12.5, "must be an integer amount in minor units"),
            ("yearly_budget", -1, "must be at least 0"),
            ("yearly_budget", 2**63, "must be at most 9223372036854775807"),
            ("segment_code", None, "is required and cannot be null"),
        ],
    )
    def test_each_refusal_names_the_attribute(self, name: str, value: Any, message: str) -> None:
        with pytest.raises(InvalidInput) as caught:
            validate_attributes(DEFINITIONS, {name: value}, partial=True)
        assert caught.value.status == 422
        assert [(e.field, e.message) for e in caught.value.errors] == [(f"body.attributes.{name}", message)]

    def test_missing_required_attribute_when_not_partial(self) -> None:
        with pytest.raises(InvalidInput) as caught:
            validate_attributes(DEFINITIONS, {"children": 1}, partial=False)
        assert fields_of(caught.value) == ["body.attributes.segment_code"]
        assert caught.value.errors[0].message == "is required"

    def test_every_fault_is_reported_at_once(self) -> None:
        with pytest.raises(InvalidAttributes) as caught:
            validate_attributes(DEFINITIONS, {"children": "many", "shoe_size": 42}, partial=False)
        assert fields_of(caught.value) == [
            "body.attributes.children",
            "body.attributes.shoe_size",
            "body.attributes.segment_code",
        ]
        assert "body.attributes.children: must be an integer" in caught.value.detail

    def test_the_field_prefix_can_follow_the_callers_schema(self) -> None:
        with pytest.raises(InvalidInput) as caught:
            validate_attributes(DEFINITIONS, {"x": 1}, partial=True, field_prefix="body.profile.attributes")
        assert fields_of(caught.value) == ["body.profile.attributes.x"]

    def test_values_must_be_an_object(self) -> None:
        with pytest.raises(InvalidInput) as caught:
            validate_attributes(DEFINITIONS, ["children"], partial=True)  # type: ignore[arg-type]
        assert fields_of(caught.value) == ["body.attributes"]


class TestDefinitionSchema:
    @pytest.mark.parametrize(
        ("body", "field"),
        [
            ({"type": "colour"}, "type"),
            ({"type": "enum"}, "enum_values"),
            ({"type": "enum", "enum_values": []}, "enum_values"),
            ({"type": "enum", "enum_values": ["a", "a"]}, "enum_values"),
            ({"type": "string", "enum_values": ["a"]}, "enum_values"),
            ({"type": "integer", "max_length": 5}, "max_length"),
            ({"type": "string", "max_length": 0}, "max_length"),
            ({"type": "string", "min_value": 1}, "min_value"),
            ({"type": "integer", "min_value": 5, "max_value": 4}, "max_value"),
            ({"type": "decimal_minor", "max_value": 2**63}, "max_value"),
            ({"type": "string", "surprise": True}, "surprise"),
        ],
    )
    def test_inconsistent_definitions_name_the_field(self, body: dict[str, Any], field: str) -> None:
        with pytest.raises(ValidationError) as caught:
            AttributeDefinitionIn.model_validate(body)
        assert field in [str(e["loc"][0]) for e in caught.value.errors()]

    def test_a_consistent_definition(self) -> None:
        definition = AttributeDefinitionIn.model_validate(
            {"type": "decimal_minor", "min_value": 0, "max_value": 100, "required": True}
        )
        assert definition.type is AttributeType.DECIMAL_MINOR
