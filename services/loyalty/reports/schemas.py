"""HTTP schemas of loyalty's reports. Points are whole numbers; shares are percentages (0–100)."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field


class ReportFormat(StrEnum):
    JSON = "json"
    PNG = "png"
    SVG = "svg"


# --- outstanding liability ---------------------------------------------------------------------------


class LiabilityFigures(BaseModel):
    members: int = Field(description="Members holding accounts", examples=[1200])
    available: int = Field(description="Members' spendable points (net of any negative balances)")
    pending: int = Field(description="Members' points held until their return window passes")
    reserved: int = Field(description="Members' points held by redemptions awaiting confirmation")
    outstanding: int = Field(description="available + pending + reserved: the points the program owes")
    issued: int = Field(description="Points issued, net of clawbacks and negative adjustments")
    redeemed: int = Field(description="Points redeemed, net of reversed redemptions")
    expired: int = Field(description="Points expired, net of reinstated ones")
    other: int = Field(default=0, description="Points in other program or partner accounts (written off…)")
    balanced: bool = Field(description="issued = outstanding + redeemed + expired + other, as it must be")


class ProgramLiability(LiabilityFigures):
    program_id: str
    name: str


class LiabilityReport(BaseModel):
    as_of: datetime = Field(description="When the balances were read")
    programs: list[ProgramLiability]
    total: LiabilityFigures

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "as_of": "2026-11-24T10:00:00Z",
                    "programs": [
                        {
                            "program_id": "gold-club",
                            "name": "Gold Club",
                            "members": 2,
                            "available": 650,
                            "pending": 200,
                            "reserved": 50,
                            "outstanding": 900,
                            "issued": 1500,
                            "redeemed": 400,
                            "expired": 200,
                            "other": 0,
                            "balanced": True,
                        }
                    ],
                    "total": {
                        "members": 2,
                        "available": 650,
                        "pending": 200,
                        "reserved": 50,
                        "outstanding": 900,
                        "issued": 1500,
                        "redeemed": 400,
                        "expired": 200,
                        "other": 0,
                        "balanced": True,
                    },
                }
            ]
        }
    )


# --- points expiring ---------------------------------------------------------------------------------


class ExpiringWindow(BaseModel):
    days: int = Field(description="The window: expiring within this many days of `as_of`", examples=[30])
    until: datetime = Field(description="End of the window (inclusive)")
    points: int = Field(description="Points expiring within the window (cumulative)", examples=[1250])
    members: int = Field(description="Members with points expiring within the window", examples=[14])
    points_since_previous: int = Field(
        description="Points expiring after the previous (shorter) window and within this one"
    )


class ExpiringReport(BaseModel):
    program_id: str
    expiry_policy: str
    timezone: str
    as_of: datetime
    windows: list[ExpiringWindow]

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "program_id": "gold-club",
                    "expiry_policy": "end_of_month",
                    "timezone": "Europe/Paris",
                    "as_of": "2026-11-24T10:00:00Z",
                    "windows": [
                        {"days": 30, "until": "2026-12-24T10:00:00Z", "points": 300, "members": 2,
                         "points_since_previous": 300},
                        {"days": 60, "until": "2027-01-23T10:00:00Z", "points": 750, "members": 3,
                         "points_since_previous": 450},
                        {"days": 90, "until": "2027-02-22T10:00:00Z", "points": 750, "members": 3,
                         "points_since_previous": 0},
                    ],
                }
            ]
        }
    )  # fmt: skip


# --- issue vs redemption -----------------------------------------------------------------------------


class FlowFigures(BaseModel):
    issued: int = Field(description="Points credited to members by the program or its partners (gross)")
    clawed_back: int = Field(description="Points taken back to the issuer: refunds, negative adjustments")
    net_issued: int = Field(description="issued − clawed_back")
    redeemed: int = Field(description="Points redeemed (net of reversed redemptions)")
    expired: int = Field(description="Points expired (net of reinstated ones)")


class FlowMonth(FlowFigures):
    month: date = Field(
        description="First day of the month (in the program's time zone)", examples=["2026-10-01"]
    )


class IssuanceReport(BaseModel):
    program_id: str
    timezone: str = Field(description="Months are calendar months in this time zone")
    since: datetime
    until: datetime
    total: FlowFigures
    months: list[FlowMonth]

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "program_id": "gold-club",
                    "timezone": "Europe/Paris",
                    "since": "2026-09-30T22:00:00Z",
                    "until": "2026-11-30T23:00:00Z",
                    "total": {"issued": 1500, "clawed_back": 100, "net_issued": 1400, "redeemed": 400,
                              "expired": 0},
                    "months": [
                        {"month": "2026-10-01", "issued": 1000, "clawed_back": 100, "net_issued": 900,
                         "redeemed": 0, "expired": 0},
                        {"month": "2026-11-01", "issued": 500, "clawed_back": 0, "net_issued": 500,
                         "redeemed": 400, "expired": 0},
                    ],
                }
            ]
        }
    )  # fmt: skip


# --- penetration -------------------------------------------------------------------------------------


class PenetrationMonth(BaseModel):
    month: date = Field(description="First day of the month (in the program's time zone)")
    customers_registered: int = Field(description="Customers registered in the month (still counted)")
    members_enrolled: int = Field(description="Members enrolled in the month (still counted)")
    customers: int = Field(description="Customers counted at the end of the month")
    members: int = Field(description="Members counted at the end of the month")
    penetration: float | None = Field(description="members / customers at the end of the month, in %")


class PenetrationReport(BaseModel):
    program_id: str
    as_of: datetime
    customers: int = Field(
        description="Customers known to loyalty (registered, not erased, not merged into another)"
    )
    members: int = Field(description="Active or suspended members whose customer is counted")
    members_unknown_customer: int = Field(
        description="Active or suspended members whose customer loyalty never heard registered"
    )
    penetration: float | None = Field(description="members / customers, in %; null without customers")
    months: list[PenetrationMonth]

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "program_id": "gold-club",
                    "as_of": "2026-11-24T10:00:00Z",
                    "customers": 4,
                    "members": 3,
                    "members_unknown_customer": 0,
                    "penetration": 75.0,
                    "months": [
                        {"month": "2026-11-01", "customers_registered": 4, "members_enrolled": 3,
                         "customers": 4, "members": 3, "penetration": 75.0}
                    ],
                }
            ]
        }
    )  # fmt: skip


# --- active members ----------------------------------------------------------------------------------


class ActiveMembersReport(BaseModel):
    program_id: str
    as_of: datetime
    days: int = Field(description="The window: the last `days` days before `as_of`", examples=[90])
    since: datetime
    members: int = Field(description="Active or suspended members enrolled by `as_of`")
    active: int = Field(description="Members who earned or redeemed in the window")
    earned: int = Field(description="Members who earned in the window")
    redeemed: int = Field(description="Members who redeemed in the window")
    earned_and_redeemed: int
    inactive: int = Field(description="members − active")
    active_share: float | None = Field(description="active / members, in %; null without members")

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "program_id": "gold-club",
                    "as_of": "2026-11-24T10:00:00Z",
                    "days": 90,
                    "since": "2026-08-26T10:00:00Z",
                    "members": 4,
                    "active": 3,
                    "earned": 3,
                    "redeemed": 1,
                    "earned_and_redeemed": 1,
                    "inactive": 1,
                    "active_share": 75.0,
                }
            ]
        }
    )
