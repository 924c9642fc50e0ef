"""Custom attributes, free of I/O: their types, their definitions, and validating values against them.

`validate_attributes` is what profile creation and update call: it refuses unknown attributes, wrong
types, values outside an enum, strings too long, numbers out of range and (unless the update is
partial) missing required attributes, naming each field at fault (`body.attributes.<name>`). It
returns the values normalised for JSON storage: dates as `YYYY-MM-DD` strings, everything else as
given. `null` clears an optional attribute and is kept in the result so a partial update can tell.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from typing import Any

from shared.errors import DomainError, FieldError, InvalidInput

NAME_PATTERN = r"^[a-z][a-z0-9_]{0,62}$"
"""snake_case identifier: a lower-case letter, then lower-case letters, digits and underscores."""

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
MAX_STRING_LENGTH = 10_000
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class AttributeType(StrEnum):
    STRING = "string"
    INTEGER = "integer"
    BOOLEAN = "boolean"
    DATE = "date"
    ENUM = "enum"
    DECIMAL_MINOR = "decimal_minor"
    """An amount as an integer in minor units (cents): money and decimals are never floats."""


@dataclass(frozen=True, slots=True)
class AttributeSpec:
    """One attribute's definition, as validation needs it."""

    name: str
    type: AttributeType
    required: bool = False
    enum_values: tuple[str, ...] = ()
    max_length: int | None = None
    min_value: int | None = None
    max_value: int | None = None
    description: str | None = None


class InvalidAttributes(InvalidInput):
    """Attribute values that break their definitions; one `FieldError` per attribute at fault."""

    def __init__(self, errors: Sequence[FieldError]) -> None:
        DomainError.__init__(self, "; ".join(f"{e.field}: {e.message}" for e in errors), errors=errors)


def validate_attributes(
    definitions: Mapping[str, AttributeSpec] | Iterable[AttributeSpec],
    values: Mapping[str, Any],
    *,
    partial: bool,
    field_prefix: str = "body.attributes",
) -> dict[str, Any]:
    """Check `values` against the definitions; return them normalised, or raise `InvalidAttributes`
    (an `InvalidInput`, 422) naming every attribute at fault. With `partial` (an update that sends
    only what changes), required attributes may be absent but still not null."""
    specs = _by_name(definitions)
    if not isinstance(values, Mapping):
        raise InvalidAttributes([FieldError(field_prefix, "must be an object of attribute values")])
    errors: list[FieldError] = []
    out: dict[str, Any] = {}
    for name, value in values.items():
        spec = specs.get(name)
        if spec is None:
            errors.append(FieldError(f"{field_prefix}.{name}", "unknown attribute"))
            continue
        if value is None:
            if spec.required:
                errors.append(FieldError(f"{field_prefix}.{name}", "is required and cannot be null"))
            else:
                out[name] = None
            continue
        normalised, problem = check_value(spec, value)
        if problem is not None:
            errors.append(FieldError(f"{field_prefix}.{name}", problem))
        else:
            out[name] = normalised
    if not partial:
        errors.extend(
            FieldError(f"{field_prefix}.{name}", "is required")
            for name, spec in sorted(specs.items())
            if spec.required and name not in values
        )
    if errors:
        raise InvalidAttributes(errors)
    return out


def _by_name(definitions: Mapping[str, AttributeSpec] | Iterable[AttributeSpec]) -> dict[str, AttributeSpec]:
    if isinstance(definitions, Mapping):
        return {spec.name: spec for spec in definitions.values()}
    return {spec.name: spec for spec in definitions}


def check_value(spec: AttributeSpec, value: Any) -> tuple[Any, str | None]:
    """(normalised value, None) when `value` fits `spec`, else (None, why not)."""
    match spec.type:
        case AttributeType.STRING:
            if not isinstance(value, str):
                return None, "must be a string"
            limit = spec.max_length if spec.max_length is not None else MAX_STRING_LENGTH
            if len(value) > limit:
                return None, f"must be at most {limit} characters"
            return value, None
        case AttributeType.ENUM:
            if not isinstance(value, str) or value not in spec.enum_values:
                return None, "must be one of: " + ", ".join(spec.enum_values)
            return value, None
        case AttributeType.BOOLEAN:
            if not isinstance(value, bool):
                return None, "must be true or false"
            return value, None
        case AttributeType.INTEGER | AttributeType.DECIMAL_MINOR:
            if isinstance(value, bool) or not isinstance(value, int):
                what = (
                    "an integer" if spec.type is AttributeType.INTEGER else "an integer amount in minor units"
                )
                return None, f"must be {what}"
            low = spec.min_value if spec.min_value is not None else INT64_MIN
            high = spec.max_value if spec.max_value is not None else INT64_MAX
            if value < low:
                return None, f"must be at least {low}"
            if value > high:
                return None, f"must be at most {high}"
            return value, None
        case AttributeType.DATE:
            parsed = _as_date(value)
            if parsed is None:
                return None, "must be a date (YYYY-MM-DD)"
            return parsed.isoformat(), None
    return None, f"has an unsupported type {spec.type}"  # pragma: no cover - every type is matched


def _as_date(value: Any) -> date | None:
    if isinstance(value, datetime):
        return None
    if isinstance(value, date):
        return value
    if isinstance(value, str) and _DATE.match(value):
        try:
            return date.fromisoformat(value)
        except ValueError:
            return None
    return None
