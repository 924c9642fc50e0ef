"""Turning per-day rows into report periods: pure functions, no I/O.

Counts and sums roll up from days into weeks and months; averages, NPS and shares are computed
once per period from those sums (an average of daily averages would weigh a quiet day like a busy
one). Medians cannot be rolled up, so complaints arrive one row each.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from statistics import median

from services.interactions.reports.periods import ReportRange, next_period, period_start
from services.interactions.reports.queries import ChannelDay, ComplaintFacts, SatisfactionDay
from services.interactions.reports.schemas import (
    ComplaintFigures,
    ComplaintsPeriod,
    ComplaintsReport,
    ContactsPeriod,
    ContactsReport,
    SatisfactionFigures,
    SatisfactionPeriod,
    SatisfactionReport,
    SlaFigures,
)
from services.interactions.surveys.domain import net_promoter_score


def _ratio(part: float, whole: float, digits: int) -> float | None:
    return round(part / whole, digits) if whole else None


def _percent(part: float, whole: float) -> float | None:
    return round(100.0 * part / whole, 1) if whole else None


def contacts(span: ReportRange, days: Iterable[ChannelDay], kinds: list[str]) -> ContactsReport:
    """Contacts per channel per period."""
    counts: dict[date, Counter[str]] = defaultdict(Counter)
    for row in days:
        counts[period_start(row.day, span.interval)][row.channel] += row.contacts
    channels = sorted({channel for counter in counts.values() for channel in counter})
    periods = []
    for start in span.periods():
        counter = counts.get(start, Counter())
        periods.append(
            ContactsPeriod(
                start=start,
                end=next_period(start, span.interval),
                total=sum(counter.values()),
                by_channel={channel: counter[channel] for channel in channels},
            )
        )
    totals: Counter[str] = sum(counts.values(), Counter())
    return ContactsReport(
        interval=span.interval,
        since=span.since,
        until=span.until,
        kinds=kinds,
        channels=channels,
        total=sum(totals.values()),
        by_channel={channel: totals[channel] for channel in channels},
        periods=periods,
    )


def _satisfaction(days: list[SatisfactionDay]) -> SatisfactionFigures:
    def total(name: str) -> int:
        return sum(getattr(day, name) for day in days)

    nps_responses, promoters, detractors = total("nps_responses"), total("promoters"), total("detractors")
    nps = net_promoter_score(promoters, detractors, nps_responses)
    return SatisfactionFigures(
        responses=total("responses"),
        csat_responses=total("csat_responses"),
        average_csat=_ratio(total("csat_sum"), total("csat_responses"), 2),
        nps_responses=nps_responses,
        promoters=promoters,
        passives=nps_responses - promoters - detractors,
        detractors=detractors,
        nps=round(nps, 1) if nps is not None else None,
        overall_responses=total("overall_responses"),
        average_overall=_ratio(total("overall_sum"), total("overall_responses"), 2),
        overall_share=_percent(total("overall_sum"), total("overall_max_sum")),
    )


def satisfaction(
    span: ReportRange, days: Iterable[SatisfactionDay], channels: list[str]
) -> SatisfactionReport:
    """Average CSAT, NPS, responses and the overall score per period."""
    every = list(days)
    grouped: dict[date, list[SatisfactionDay]] = defaultdict(list)
    for day in every:
        grouped[period_start(day.day, span.interval)].append(day)
    periods = [
        SatisfactionPeriod(
            start=start,
            end=next_period(start, span.interval),
            **_satisfaction(grouped.get(start, [])).model_dump(),
        )
        for start in span.periods()
    ]
    return SatisfactionReport(
        interval=span.interval,
        since=span.since,
        until=span.until,
        channels=channels,
        total=_satisfaction(every),
        periods=periods,
    )


def _hours(delta: timedelta) -> float:
    return delta.total_seconds() / 3600


@dataclass
class _SlaTally:
    met: int = 0
    missed: int = 0
    pending: int = 0

    def add(self, reached_at: datetime | None, due: datetime, flagged: bool, now: datetime) -> None:
        if flagged or (reached_at is not None and reached_at > due) or (reached_at is None and due < now):
            self.missed += 1
        elif reached_at is not None:
            self.met += 1
        else:
            self.pending += 1

    def figures(self) -> SlaFigures:
        return SlaFigures(
            met=self.met,
            missed=self.missed,
            pending=self.pending,
            compliance=_percent(self.met, self.met + self.missed),
        )


@dataclass
class _ComplaintTally:
    opened: int = 0
    opened_by_priority: Counter[str] = field(default_factory=Counter)
    first_response_hours: list[float] = field(default_factory=list)
    resolution_hours: list[float] = field(default_factory=list)
    first_response_sla: _SlaTally = field(default_factory=_SlaTally)
    resolution_sla: _SlaTally = field(default_factory=_SlaTally)

    def figures(self) -> ComplaintFigures:
        return ComplaintFigures(
            opened=self.opened,
            resolved=len(self.resolution_hours),
            opened_by_priority=dict(sorted(self.opened_by_priority.items())),
            median_first_response_hours=(
                round(median(self.first_response_hours), 2) if self.first_response_hours else None
            ),
            median_resolution_hours=round(median(self.resolution_hours), 2)
            if self.resolution_hours
            else None,
            first_response_sla=self.first_response_sla.figures(),
            resolution_sla=self.resolution_sla.figures(),
        )


def resolution_moment(complaint: ComplaintFacts) -> datetime | None:
    """When the complaint was resolved; a complaint closed without a resolution step counts as
    resolved when it was closed."""
    return complaint.resolved_at or complaint.closed_at


def complaints(
    span: ReportRange, facts: Iterable[ComplaintFacts], channels: list[str], *, now: datetime
) -> ComplaintsReport:
    """Complaint volumes, median response and resolution times, and SLA compliance per period.
    Each figure is counted in the period of its own moment: volumes and SLA compliance by opening,
    first-response times by first response, resolution times by resolution. SLA outcomes are as of
    `now` (a complaint still unanswered after its due date has missed it)."""
    tallies: dict[date, _ComplaintTally] = defaultdict(_ComplaintTally)
    total = _ComplaintTally()

    def inside(moment: datetime | None) -> bool:
        return moment is not None and span.since <= moment < span.until

    for complaint in facts:
        resolved = resolution_moment(complaint)
        if inside(complaint.opened_at):
            for tally in (tallies[period_start(complaint.opened_at.date(), span.interval)], total):
                tally.opened += 1
                tally.opened_by_priority[complaint.priority] += 1
                tally.first_response_sla.add(
                    complaint.first_response_at,
                    complaint.first_response_due,
                    complaint.first_response_breached,
                    now,
                )
                tally.resolution_sla.add(
                    resolved, complaint.resolution_due, complaint.resolution_breached, now
                )
        if complaint.first_response_at is not None and inside(complaint.first_response_at):
            hours = _hours(complaint.first_response_at - complaint.opened_at)
            for tally in (tallies[period_start(complaint.first_response_at.date(), span.interval)], total):
                tally.first_response_hours.append(hours)
        if resolved is not None and inside(resolved):
            hours = _hours(resolved - complaint.opened_at)
            for tally in (tallies[period_start(resolved.date(), span.interval)], total):
                tally.resolution_hours.append(hours)
    periods = [
        ComplaintsPeriod(
            start=start,
            end=next_period(start, span.interval),
            **tallies.get(start, _ComplaintTally()).figures().model_dump(),
        )
        for start in span.periods()
    ]
    return ComplaintsReport(
        interval=span.interval,
        since=span.since,
        until=span.until,
        channels=channels,
        total=total.figures(),
        periods=periods,
    )
