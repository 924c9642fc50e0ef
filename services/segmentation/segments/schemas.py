"""HTTP schemas of segments, with the examples the OpenAPI document shows."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

EXAMPLE_RULES: dict[str, dict[str, Any]] = {
    "frequent_recent_buyers": {
        "summary": "3+ purchases in the last 90 days",
        "value": {
            "name": "Frequent recent buyers",
            "kind": "rule",
            "rule": {"purchases": {"within_days": 90, "at_least": 3}},
        },
    },
    "lapsing_high_value": {
        "summary": "High spenders who stopped buying",
        "value": {
            "name": "Lapsing high spenders",
            "description": "Spent 500 EUR or more, nothing in the last 60 days, not already at risk",
            "kind": "rule",
            "rule": {
                "all": [
                    {"field": "currency", "op": "=", "value": "EUR"},
                    {"field": "net_spend_minor", "op": ">=", "value": 50000},
                    {"field": "days_since_last_purchase", "op": ">=", "value": 60},
                    {"not": {"field": "risk_level", "op": "=", "value": "high"}},
                ]
            },
        },
    },
    "unhappy": {
        "summary": "Unhappy: detractors or open complaints",
        "value": {
            "name": "Unhappy customers",
            "kind": "rule",
            "rule": {
                "any": [
                    {"field": "nps_category", "op": "=", "value": "detractor"},
                    {"complaints": {"within_days": 180, "at_least": 1, "open": True}},
                    {"field": "unanswered_complaints", "op": ">", "value": 0},
                ]
            },
        },
    },
    "advocates_on_web": {
        "summary": "Advocates reached on the web, inside another segment",
        "value": {
            "name": "Web advocates",
            "kind": "rule",
            "rule": {
                "all": [
                    {"field": "ladder_stage", "op": ">=", "value": "advocate"},
                    {"field": "channels", "op": "contains", "value": "web"},
                    {"contacts": {"within_days": 30, "channel": "web", "at_least": 1}},
                    {"in_segment": "6f1c2a9e-8b1d-4a5e-9a63-1f0c7d2b4e11"},
                ]
            },
        },
    },
    "static_list": {
        "summary": "A static list (members uploaded later)",
        "value": {"name": "Trade fair 2025 visitors", "kind": "static"},
    },
}


class SegmentIn(BaseModel):
    """A segment to create or replace. `rule` is required for `kind: rule` and absent for `static`."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200, examples=["Frequent recent buyers"])
    description: str | None = Field(default=None, max_length=2000)
    kind: Literal["rule", "static"] = Field(
        default="rule", description="`rule`: members computed from `rule`; `static`: an uploaded list"
    )
    rule: dict[str, Any] | None = Field(
        default=None,
        description="The rule (see the segments module documentation and `GET /segments/catalogue`)",
        examples=[{"purchases": {"within_days": 90, "at_least": 3}}],
    )


class PreviewIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rule: dict[str, Any] = Field(
        examples=[
            {
                "all": [
                    {"field": "net_spend_minor", "op": ">=", "value": 10000},
                    {"purchases": {"within_days": 90, "at_least": 3}},
                ]
            }
        ]
    )


class PreviewOut(BaseModel):
    count: int = Field(description="Customers matching now", examples=[1234])
    sample: list[str] = Field(description="Up to 20 matching customer ids (lowest ids first)")
    time_relative: bool = Field(description="Whether time passing alone changes the result")


class SegmentOut(BaseModel):
    id: str
    name: str
    description: str | None
    kind: str = Field(examples=["rule"])
    rule: dict[str, Any] | None
    time_relative: bool = Field(description="Re-evaluated by the scheduled pass too")
    version: int = Field(description="1 on creation, +1 on every replacement")
    member_count: int | None = Field(default=None, description="Current members (single reads only)")
    created_at: datetime
    updated_at: datetime
    evaluated_at: datetime | None = Field(description="Last batch evaluation")


class MembershipResult(BaseModel):
    """What a save or an upload changed."""

    segment: SegmentOut
    entered: int = Field(examples=[120])
    exited: int = Field(examples=[4])


class SegmentList(BaseModel):
    items: list[SegmentOut]


class MemberOut(BaseModel):
    customer_id: str
    since: datetime


class MemberPage(BaseModel):
    items: list[MemberOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null at the end")


class MembersUpload(BaseModel):
    model_config = ConfigDict(extra="forbid")

    customer_ids: list[str] = Field(
        min_length=1, max_length=100_000, examples=[["9b7e1c1e-3f5d-4c1a-8a43-2c6d1f0e9a10"]]
    )
    replace: bool = Field(
        default=False, description="true: the list becomes the whole membership (others exit)"
    )


class CustomerSegmentOut(BaseModel):
    segment_id: str
    name: str
    kind: str
    since: datetime


class CustomerSegments(BaseModel):
    customer_id: str
    items: list[CustomerSegmentOut]


class CatalogueField(BaseModel):
    field: str = Field(examples=["net_spend_minor"])
    type: str = Field(examples=["integer"])
    nullable: bool
    operators: list[str] = Field(examples=[["=", "!=", "<", "<=", ">", ">=", "between"]])
    choices: list[str] | None
    description: str


class Catalogue(BaseModel):
    fields: list[CatalogueField]
    windows: dict[str, list[str]] = Field(
        description="Time-window rules and the keys each takes",
        examples=[{"purchases": ["within_days", "at_least", "at_most", "channel"]}],
    )


class HistoryBucket(BaseModel):
    """One period of a segment's membership history."""

    start: date = Field(description="First day of the period (UTC)", examples=["2026-11-02"])
    end: date = Field(description="First day after the period (UTC)", examples=["2026-11-03"])
    members: int = Field(
        description="Members at the end of the period (at `until` for a period that ends later)",
        examples=[1180],
    )
    entered: int = Field(description="Entries during the period (within the range)", examples=[42])
    exited: int = Field(description="Exits during the period (within the range)", examples=[7])


class SegmentHistoryOut(BaseModel):
    """Members, entries and exits per period, from the recorded history of every entry and exit."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "segment_id": "6f1c2a9e-8b1d-4a5e-9a63-1f0c7d2b4e11",
                    "interval": "day",
                    "since": "2026-11-01T00:00:00Z",
                    "until": "2026-11-04T00:00:00Z",
                    "members_at_start": 1145,
                    "buckets": [
                        {"start": f"2026-11-0{d}", "end": f"2026-11-0{d + 1}", **figures}
                        for d, figures in enumerate(
                            [
                                {"members": 1145, "entered": 0, "exited": 0},
                                {"members": 1180, "entered": 42, "exited": 7},
                                {"members": 1176, "entered": 3, "exited": 7},
                            ],
                            start=1,
                        )
                    ],
                }
            ]
        }
    )

    segment_id: str
    interval: str = Field(description="day, week (ISO, from Monday) or month (UTC)", examples=["day"])
    since: datetime = Field(description="Start of the range (inclusive, UTC)")
    until: datetime = Field(description="End of the range (exclusive, UTC)")
    members_at_start: int = Field(description="Members at `since`", examples=[1145])
    buckets: list[HistoryBucket] = Field(description="Every period the range touches, oldest first")
