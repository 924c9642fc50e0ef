"""The record the matching engine compares: one customer's identifying values, already normalised.

`MatchRecord` holds values exactly as the `normalise_*` functions leave them, with placeholders and
invalid values already replaced by None; matching never normalises again (it runs thousands of
times per record). `MatchRecord.from_raw` does that preparation for callers holding raw input.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field, fields

from services.identity.matching.normalise import (
    InvalidIdentifier,
    is_placeholder,
    normalise_email,
    normalise_gender,
    normalise_name,
    normalise_national_id,
    normalise_phone,
    normalise_postcode,
    normalise_street,
)

EARLIEST_BIRTH_DATE = dt.date(1900, 1, 2)


@dataclass(frozen=True, slots=True)
class MatchRecord:
    """Identifying values of one customer record, normalised, None where unknown."""

    id: str
    given_name: str | None = None
    family_name: str | None = None
    organisation_name: str | None = None
    email: str | None = None
    phone: str | None = None
    birth_date: dt.date | None = None
    postcode: str | None = None
    city: str | None = None
    street: str | None = None
    national_id: str | None = None
    gender: str | None = None
    # Values derived for comparison (`comparisons._profile`), filled on first use: not part of the
    # record's value (no effect on equality, hashing, repr or pickling).
    derived: object | None = field(default=None, init=False, repr=False, compare=False)

    def __reduce__(self) -> tuple[type[MatchRecord], tuple[object, ...]]:
        # Pickled (and copied) as its value: the constructor's arguments, in order, so unpickling is
        # one call of the constructor (records cross from the import's worker process by the 100,000).
        return MatchRecord, tuple([getattr(self, name) for name in _VALUE_FIELDS])

    @classmethod
    def from_raw(
        cls,
        id: str,
        *,
        given_name: str | None = None,
        family_name: str | None = None,
        organisation_name: str | None = None,
        email: str | None = None,
        phone: str | None = None,
        birth_date: dt.date | str | None = None,
        postcode: str | None = None,
        city: str | None = None,
        street: str | None = None,
        national_id: str | None = None,
        gender: str | None = None,
        default_region: str | None = None,
        today: dt.date | None = None,
    ) -> MatchRecord:
        """A record from raw input: each value normalised; placeholders, invalid values and
        impossible birth dates (before 1900-01-02 or after `today`) become None.

        `default_region` (ISO country, e.g. from the address) reads phones without `+` and ZIP+4
        codes. Phones only need to be possible numbers here (see `normalise_phone`).
        """

        def clean(field: str, raw: str | None, normalise: Callable[[str], str]) -> str | None:
            if raw is None or is_placeholder(field, raw):
                return None
            try:
                value = normalise(raw)
            except InvalidIdentifier:
                return None
            return None if is_placeholder(field, value) else value

        def name(raw: str) -> str:
            value = normalise_name(raw)
            if not value:
                raise InvalidIdentifier("name", "empty")
            return value

        return cls(
            id=id,
            given_name=clean("given_name", given_name, name),
            family_name=clean("family_name", family_name, name),
            organisation_name=clean("organisation_name", organisation_name, name),
            email=clean("email", email, normalise_email),
            phone=clean("phone", phone, lambda v: normalise_phone(v, default_region, strict=False)),
            birth_date=_birth_date(birth_date, today or dt.date.today()),
            postcode=clean("postcode", postcode, lambda v: normalise_postcode(v, default_region)),
            city=clean("city", city, name),
            street=clean("street", street, normalise_street),
            national_id=clean("national_id", national_id, normalise_national_id),
            gender=None if gender is None else _gender(gender),
        )


# The fields that make a record's value, in the constructor's order (pickled as a tuple of them).
_VALUE_FIELDS = tuple(f.name for f in fields(MatchRecord) if f.init)


def _birth_date(raw: dt.date | str | None, today: dt.date) -> dt.date | None:
    if raw is None:
        return None
    if isinstance(raw, str):
        if is_placeholder("birth_date", raw):
            return None
        try:
            raw = dt.date.fromisoformat(raw.strip()[:10])
        except ValueError:
            return None
    if isinstance(raw, dt.datetime):
        raw = raw.date()
    if is_placeholder("birth_date", raw.isoformat()) or not EARLIEST_BIRTH_DATE <= raw <= today:
        return None
    return raw


def _gender(raw: str) -> str | None:
    try:
        return normalise_gender(raw)
    except InvalidIdentifier:
        return None
