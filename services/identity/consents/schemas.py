"""Consents' HTTP schemas: what clients send and what they get back."""

from __future__ import annotations

from datetime import datetime, time
from typing import Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from services.identity.consents.domain import Channel, ConsentSource, Purpose
from services.identity.consents.models import ConsentHistoryRow, ContactPreferencesRow
from shared.contracts.identity import ConsentStatus

LANGUAGE_TAG = r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$"  # BCP 47, as far as a contact needs it


class ConsentChange(BaseModel):
    """The customer's choice for one channel and purpose."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "status": "granted",
                    "source": "web_form",
                    "evidence": "signup-form v3.2, checkbox 'news and offers'",
                },
                {
                    "status": "withdrawn",
                    "source": "call_centre",
                    "evidence": "call recording 2026-11-20-0042",
                },
            ]
        },
    )

    status: ConsentStatus
    source: ConsentSource = Field(description="How the choice reached us")
    evidence: str | None = Field(
        default=None,
        min_length=1,
        max_length=2000,
        description="Proof of the choice: free text or a reference (form version, call recording id)",
    )


class ConsentOut(BaseModel):
    """The current consent for one channel and purpose."""

    model_config = ConfigDict(from_attributes=True)

    channel: Channel
    purpose: Purpose
    status: ConsentStatus
    changed_at: datetime
    source: ConsentSource
    evidence: str | None = Field(description="Null after the customer's data was erased")
    actor: str | None = Field(description="Who recorded it (the request's `X-Actor`); null after erasure")
    customer_id: str = Field(description="The customer id the choice was recorded under (merged ids differ)")


class ConsentHistoryOut(ConsentOut):
    """One recorded choice, as it was made."""

    id: int
    previous_status: ConsentStatus | None = Field(
        description="The golden record's status for this channel and purpose just before"
    )

    @classmethod
    def from_row(cls, row: ConsentHistoryRow) -> Self:
        return cls.model_validate(row)


class QuietHours(BaseModel):
    """Local times between which the customer must not be contacted; may span midnight."""

    model_config = ConfigDict(extra="forbid")

    start: time = Field(examples=["21:00"])
    end: time = Field(examples=["09:00"])
    time_zone: str = Field(
        default="UTC", description="IANA time zone of the times", examples=["Europe/Madrid"]
    )

    @field_validator("start", "end")
    @classmethod
    def _local(cls, value: time) -> time:
        if value.tzinfo is not None:
            raise ValueError("give a local time without offset; the zone goes in time_zone")
        return value

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @model_validator(mode="after")
    def _not_empty(self) -> Self:
        if self.start == self.end:
            raise ValueError("start and end must differ")
        return self


class ContactPreferencesIn(BaseModel):
    """How (and whether) the customer wants to be contacted. Replaces the previous preferences."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "do_not_contact": False,
                    "preferred_channel": "email",
                    "preferred_language": "es",
                    "quiet_hours": {"start": "21:00", "end": "09:00", "time_zone": "Europe/Madrid"},
                }
            ]
        },
    )

    do_not_contact: bool = Field(default=False, description="No contact at all, whatever the consents say")
    preferred_channel: Channel | None = None
    preferred_language: str | None = Field(default=None, pattern=LANGUAGE_TAG, max_length=35, examples=["es"])
    quiet_hours: QuietHours | None = None


class ContactPreferencesOut(BaseModel):
    do_not_contact: bool
    preferred_channel: Channel | None
    preferred_language: str | None
    quiet_hours: QuietHours | None
    actor: str | None = Field(description="Who set them (the request's `X-Actor`)")
    updated_at: datetime | None = Field(description="Null when the customer never stated preferences")
    customer_id: str | None = Field(description="The customer id the preferences were recorded under")

    @classmethod
    def from_row(cls, row: ContactPreferencesRow | None) -> Self:
        if row is None:
            return cls(
                do_not_contact=False,
                preferred_channel=None,
                preferred_language=None,
                quiet_hours=None,
                actor=None,
                updated_at=None,
                customer_id=None,
            )
        quiet = None
        if row.quiet_hours_start is not None and row.quiet_hours_end is not None:
            quiet = QuietHours(
                start=row.quiet_hours_start,
                end=row.quiet_hours_end,
                time_zone=row.quiet_hours_time_zone or "UTC",
            )
        return cls(
            do_not_contact=row.do_not_contact,
            preferred_channel=Channel(row.preferred_channel) if row.preferred_channel else None,
            preferred_language=row.preferred_language,
            quiet_hours=quiet,
            actor=row.actor,
            updated_at=row.updated_at,
            customer_id=row.customer_id,
        )


class ConsentsOut(BaseModel):
    """A customer's current consents (only the channel × purpose pairs ever recorded) and preferences."""

    customer_id: str
    consents: list[ConsentOut]
    preferences: ContactPreferencesOut
