"""Consent rules, free of I/O: the vocabularies, which change is current, and whether we may contact.

A golden record unites several customer ids, each with its own consent rows. The customer's current
choice for a (channel, purpose) is the most recent change among all of them; on a tie the most
restrictive status wins, so an ambiguity never turns into permission. The same rule picks the
contact preferences that apply.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, time
from enum import StrEnum
from typing import Protocol, TypeVar, cast
from zoneinfo import ZoneInfo

from shared.contracts.identity import ConsentStatus


class Channel(StrEnum):
    """The channels a consent or a preference can be about."""

    EMAIL = "email"
    SMS = "sms"
    PHONE = "phone"
    DIRECT_MAIL = "direct_mail"
    PUSH = "push"
    WHATSAPP = "whatsapp"
    IN_APP = "in_app"
    FAX = "fax"


class Purpose(StrEnum):
    """What the customer's data or attention would be used for."""

    MARKETING = "marketing"
    SERVICE = "service"
    PROFILING = "profiling"
    THIRD_PARTY_SHARING = "third_party_sharing"
    SURVEYS = "surveys"


class ConsentSource(StrEnum):
    """How the choice reached us."""

    WEB_FORM = "web_form"
    MOBILE_APP = "mobile_app"
    STORE = "store"
    CALL_CENTRE = "call_centre"
    EMAIL_LINK = "email_link"
    PAPER_FORM = "paper_form"
    IMPORT = "import"
    API = "api"


# Higher is more restrictive: on equal timestamps the more restrictive status is current.
_RESTRICTIVENESS: dict[str, int] = {"granted": 0, "denied": 1, "withdrawn": 2}


class ConsentLike(Protocol):
    @property
    def channel(self) -> str: ...
    @property
    def purpose(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def changed_at(self) -> datetime: ...


class PreferencesLike(Protocol):
    @property
    def do_not_contact(self) -> bool: ...
    @property
    def updated_at(self) -> datetime: ...


C = TypeVar("C", bound=ConsentLike)
P = TypeVar("P", bound=PreferencesLike)


def current_consents(records: Iterable[C]) -> dict[tuple[str, str], C]:
    """The current consent per (channel, purpose) among the rows of all a golden record's ids."""
    current: dict[tuple[str, str], C] = {}
    for record in records:
        key = (str(record.channel), str(record.purpose))
        held = current.get(key)
        if held is None or _later(record, held):
            current[key] = record
    return current


def _later(record: ConsentLike, than: ConsentLike) -> bool:
    if record.changed_at != than.changed_at:
        return record.changed_at > than.changed_at
    return _RESTRICTIVENESS[record.status] > _RESTRICTIVENESS[than.status]


def current_preferences(records: Iterable[P]) -> P | None:
    """The contact preferences that apply: the most recently updated; on a tie, do-not-contact wins."""
    chosen: P | None = None
    for record in records:
        if (
            chosen is None
            or record.updated_at > chosen.updated_at
            or (
                record.updated_at == chosen.updated_at and record.do_not_contact and not chosen.do_not_contact
            )
        ):
            chosen = record
    return chosen


def as_status(value: str) -> ConsentStatus:
    """A stored status back as the contract's type."""
    if value not in _RESTRICTIVENESS:
        raise ValueError(f"not a consent status: {value!r}")
    return cast(ConsentStatus, value)


def status_changed(previous: ConsentStatus | None, new: ConsentStatus) -> bool:
    """Whether a change is news: a first record (even a withdrawal of what was never granted) is."""
    return previous != new


def in_quiet_hours(start: time, end: time, time_zone: str, at: datetime) -> bool:
    """Whether `at` falls in the customer's quiet hours [start, end) local time; they may span midnight."""
    local = at.astimezone(ZoneInfo(time_zone)).time().replace(tzinfo=None)
    if start <= end:
        return start <= local < end
    return local >= start or local < end


def may_contact_now(
    *,
    do_not_contact: bool,
    consent_status: str | None,
    quiet_hours: tuple[time, time, str] | None = None,
    at: datetime | None = None,
) -> bool:
    """Contact is allowed only with a current grant, no do-not-contact, and (when a time is given)
    outside the quiet hours."""
    if do_not_contact or consent_status != "granted":
        return False
    if at is not None and quiet_hours is not None:
        return not in_quiet_hours(*quiet_hours, at)
    return True
