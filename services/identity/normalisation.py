"""From what a source sent to what identity stores and matches on.

Display values keep their form (trimmed; e-mail lower-cased; phone in E.164); matching values are
fully normalised (provider dots and +tags dropped, accents and case folded) and set to None when
they are placeholders or on the blocked list, so junk like `test@test.com` never joins customers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from services.identity.matching import (
    InvalidIdentifier,
    MatchRecord,
    is_placeholder,
    normalise_email,
    normalise_name,
    normalise_national_id,
    normalise_phone,
    normalise_postcode,
)
from services.identity.schemas import ProfileFields
from shared.errors import DomainError, FieldError

LANGUAGE_REGION = {"es": "ES", "de": "DE", "fr": "FR", "it": "IT", "pt": "PT", "nl": "NL", "en": "GB"}


class InvalidProfile(DomainError):
    status = 422
    slug = "invalid-input"
    title = "Invalid input"


@dataclass(frozen=True, slots=True)
class Normalised:
    display: dict[str, Any]  # what the golden record may show
    match: dict[str, Any]  # MatchRecord fields (JSON-ready)
    identifiers: list[tuple[str, str]]  # (kind, value) for deterministic matching and search


def _region(fields: ProfileFields, default_region: str | None) -> str | None:
    for address in fields.addresses or []:
        if address.country:
            return address.country
    if fields.language:
        return LANGUAGE_REGION.get(fields.language.split("-")[0], default_region)
    return default_region


def _card(raw: str) -> str:
    return re.sub(r"[^0-9A-Za-z]", "", raw).upper()


def normalise_fields(
    fields: ProfileFields,
    *,
    prefix: str = "body",
    default_region: str | None = None,
    blocked: frozenset[str] = frozenset(),
) -> Normalised:
    """Validate and normalise identifiers. Raises InvalidProfile naming every bad field."""
    errors: list[FieldError] = []
    display: dict[str, Any] = fields.model_dump(mode="json", exclude_none=True)
    match: dict[str, Any] = {}
    identifiers: list[tuple[str, str]] = []

    def usable(kind: str, value: str | None) -> str | None:
        if value is None or is_placeholder(kind, value) or value in blocked:
            return None
        return value

    if fields.email is not None:
        try:
            normalised = normalise_email(fields.email)
            display["email"] = fields.email.strip().lower()
            if (value := usable("email", normalised)) is not None:
                match["email"] = value
                identifiers.append(("email", value))
        except InvalidIdentifier as exc:
            errors.append(FieldError(f"{prefix}.email", exc.reason))
    digits = re.sub(r"\D", "", fields.phone or "")
    if fields.phone is not None and len(digits) >= 6 and is_placeholder("phone", digits):
        display.pop("phone", None)  # "000000" and the like mean "no phone": not an error, not data
    elif fields.phone is not None:
        try:
            e164 = normalise_phone(fields.phone, _region(fields, default_region))
            display["phone"] = e164
            if (value := usable("phone", e164)) is not None:
                match["phone"] = value
                identifiers.append(("phone", value))
        except InvalidIdentifier as exc:
            errors.append(FieldError(f"{prefix}.phone", exc.reason))
    if fields.national_id is not None:
        try:
            value = normalise_national_id(fields.national_id)
        except InvalidIdentifier:  # "-", " ": nothing left once normalised
            value = ""
        if not value:
            errors.append(FieldError(f"{prefix}.national_id", "must contain letters or digits"))
        elif (usable_id := usable("national_id", value)) is not None:
            match["national_id"] = usable_id
            identifiers.append(("national_id", usable_id))
    if fields.card_number is not None:
        card = _card(fields.card_number)
        if len(card) < 4:
            errors.append(FieldError(f"{prefix}.card_number", "must have at least 4 letters or digits"))
        elif len(set(card)) > 1 and card not in blocked:  # "0000", "XXXX": a card field typed to pass a form
            identifiers.append(("card", card))
    for system, value in (fields.external_ids or {}).items():
        if not re.fullmatch(r"[a-z0-9_.-]{1,60}", system):
            errors.append(
                FieldError(
                    f"{prefix}.external_ids.{system}", "system names are lower-case letters, digits, _.-"
                )
            )
        elif not value.strip():
            errors.append(FieldError(f"{prefix}.external_ids.{system}", "must not be empty"))
        else:
            identifiers.append((f"external:{system}", value.strip()))
    if errors:
        raise InvalidProfile("; ".join(f"{e.field}: {e.message}" for e in errors), errors=errors)

    for name in ("given_name", "family_name", "organisation_name"):
        raw = getattr(fields, name)
        if raw is not None:
            display[name] = " ".join(raw.split())
            value = normalise_name(raw)
            if value and not is_placeholder("name", value):
                match[name] = value
    if fields.birth_date is not None:
        match["birth_date"] = fields.birth_date.isoformat()
    if fields.gender is not None and fields.gender != "unknown":
        match["gender"] = fields.gender
    if fields.addresses:
        first = fields.addresses[0]
        try:
            postcode = normalise_postcode(first.postcode, first.country) if first.postcode else ""
        except InvalidIdentifier:  # no letters or digits ("-"): nothing to match on
            postcode = ""
        if postcode and not is_placeholder("postcode", postcode):
            match["postcode"] = postcode
        if first.locality:
            match["city"] = normalise_name(first.locality)
        if first.street:
            match["street"] = normalise_name(f"{first.street_number or ''} {first.street}")
    return Normalised(display=display, match=match, identifiers=identifiers)


def match_record(record_id: str, match: dict[str, Any]) -> MatchRecord:
    from datetime import date

    birth = match.get("birth_date")
    return MatchRecord(
        id=record_id,
        given_name=match.get("given_name"),
        family_name=match.get("family_name"),
        organisation_name=match.get("organisation_name"),
        email=match.get("email"),
        phone=match.get("phone"),
        birth_date=date.fromisoformat(birth) if birth else None,
        postcode=match.get("postcode"),
        city=match.get("city"),
        street=match.get("street"),
        national_id=match.get("national_id"),
        gender=match.get("gender"),
    )


def search_keys(match: dict[str, Any]) -> set[str]:
    """Keys that find a customer by any part of any of their names, exactly or by prefix."""
    keys: set[str] = set()
    for name in ("given_name", "family_name", "organisation_name"):
        for token in (match.get(name) or "").split():
            if len(token) >= 2:
                keys.add(f"t:{token[:40]}")
                keys.add(f"p:{token[:3]}")
    return keys


def query_search_keys(query: str) -> list[str]:
    keys: list[str] = []
    for token in normalise_name(query).split():
        if len(token) >= 2:
            keys.extend((f"t:{token[:40]}", f"p:{token[:3]}"))
    return keys
