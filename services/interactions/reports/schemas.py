"""HTTP schemas of the reports."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum

from pydantic import BaseModel, Field

from services.interactions.reports.periods import Interval


class ReportFormat(StrEnum):
    JSON = "json"
    PNG = "png"
    SVG = "svg"


class Period(BaseModel):
    start: date = Field(description="First day of the period (UTC)", examples=["2026-11-16"])
    end: date = Field(description="First day after the period (UTC)", examples=["2026-11-23"])


class ReportHeader(BaseModel):
    interval: Interval
    since: datetime = Field(description="Start of the range covered (inclusive, UTC)")
    until: datetime = Field(description="End of the range covered (exclusive, UTC)")


class ContactsPeriod(Period):
    total: int = Field(examples=[42])
    by_channel: dict[str, int] = Field(
        description="Every channel of the report, zero included", examples=[{"email": 30, "phone": 12}]
    )


class ContactsReport(ReportHeader):
    kinds: list[str] = Field(description="The kinds of contact counted (all when empty)")
    channels: list[str] = Field(description="Channels with at least one contact in the range")
    total: int
    by_channel: dict[str, int]
    periods: list[ContactsPeriod]


class SatisfactionFigures(BaseModel):
    responses: int = Field(description="Surveys answered", examples=[120])
    csat_responses: int = Field(description="Surveys with a CSAT answer")
    average_csat: float | None = Field(description="Mean CSAT (1–5); null without answers", examples=[4.21])
    nps_responses: int = Field(description="Surveys with an NPS answer")
    promoters: int = Field(description="NPS answers 9–10")
    passives: int = Field(description="NPS answers 7–8")
    detractors: int = Field(description="NPS answers 0–6")
    nps: float | None = Field(
        description="% promoters − % detractors (−100 to 100); null without answers", examples=[35.0]
    )
    overall_responses: int = Field(description="Surveys with at least one attribute rated")
    average_overall: float | None = Field(description="Mean overall score (sum over rated attributes)")
    overall_share: float | None = Field(
        description="Σ overall scores / Σ their maxima, in percent: the overall score on one scale "
        "whatever the number of attributes each survey rated",
        examples=[78.5],
    )


class SatisfactionPeriod(Period, SatisfactionFigures):
    pass


class SatisfactionReport(ReportHeader):
    channels: list[str] = Field(description="Survey channels counted (all when empty)")
    total: SatisfactionFigures
    periods: list[SatisfactionPeriod]


class SlaFigures(BaseModel):
    met: int = Field(description="Target reached in time")
    missed: int = Field(description="Target missed (reached late, flagged as breached, or overdue now)")
    pending: int = Field(description="Not reached yet, and not due yet")
    compliance: float | None = Field(
        description="met / (met + missed), in percent; null when nothing is settled", examples=[92.5]
    )


class ComplaintFigures(BaseModel):
    opened: int = Field(description="Complaints opened")
    resolved: int = Field(description="Complaints resolved (or closed without a resolution step)")
    opened_by_priority: dict[str, int] = Field(examples=[{"high": 2, "normal": 7}])
    median_first_response_hours: float | None = Field(
        description="Median time from opening to first response, of complaints first answered in the period"
    )
    median_resolution_hours: float | None = Field(
        description="Median time from opening to resolution, of complaints resolved in the period"
    )
    first_response_sla: SlaFigures = Field(description="Of the complaints opened in the period")
    resolution_sla: SlaFigures = Field(description="Of the complaints opened in the period")


class ComplaintsPeriod(Period, ComplaintFigures):
    pass


class ComplaintsReport(ReportHeader):
    channels: list[str] = Field(description="Complaint channels counted (all when empty)")
    total: ComplaintFigures
    periods: list[ComplaintsPeriod]
