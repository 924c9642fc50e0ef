"""Report periods: the time range a report covers and how it is cut into days, weeks or months.

Periods are UTC calendar periods: a day starts at 00:00 UTC, a week on Monday (ISO 8601), a month on
its first day. The databases only group by UTC day (portable between SQLite and PostgreSQL, and small:
at most one row per day and series); days are rolled up into weeks and months here. The first and
last periods may be partial when `since`/`until` fall inside them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum

from shared.errors import InvalidInput

DEFAULT_SPAN = timedelta(days=90)
MAX_SPAN = timedelta(days=731)  # two years, whatever the interval: a report scans at most that much


class Interval(StrEnum):
    DAY = "day"
    WEEK = "week"
    MONTH = "month"


@dataclass(frozen=True, slots=True)
class ReportRange:
    since: datetime  # inclusive, UTC
    until: datetime  # exclusive, UTC
    interval: Interval

    def periods(self) -> list[date]:
        """The start of every period the range touches, oldest first (empty ones included)."""
        first = period_start(self.since.date(), self.interval)
        last = period_start((self.until - timedelta(microseconds=1)).date(), self.interval)
        starts = []
        current = first
        while current <= last:
            starts.append(current)
            current = next_period(current, self.interval)
        return starts


def resolve_range(
    since: datetime | None, until: datetime | None, interval: Interval, *, now: datetime
) -> ReportRange:
    """The range asked for, with defaults (until now, since 90 days before `until`), checked: both
    timezone-aware, `since` before `until`, at most two years apart (errors name the query field)."""
    for name, moment in (("since", since), ("until", until)):
        if moment is not None and moment.tzinfo is None:
            raise InvalidInput(f"query.{name}", "give a time zone (e.g. Z or +01:00)")
    end = (until or now).astimezone(UTC)
    start = (since or end - DEFAULT_SPAN).astimezone(UTC)
    if start >= end:
        raise InvalidInput(
            "query.since" if since is not None else "query.until", "since must be before until"
        )
    if end - start > MAX_SPAN:
        raise InvalidInput("query.since", f"a report covers at most {MAX_SPAN.days} days: narrow since/until")
    return ReportRange(start, end, interval)


def period_start(day: date, interval: Interval) -> date:
    """The first day of the day's period."""
    if interval is Interval.WEEK:
        return day - timedelta(days=day.weekday())
    if interval is Interval.MONTH:
        return day.replace(day=1)
    return day


def next_period(start: date, interval: Interval) -> date:
    """The first day of the period after the one starting on `start`."""
    if interval is Interval.WEEK:
        return start + timedelta(days=7)
    if interval is Interval.MONTH:
        return date(start.year + start.month // 12, start.month % 12 + 1, 1)
    return start + timedelta(days=1)


def midnight(day: date) -> datetime:
    """00:00 UTC of the day."""
    return datetime.combine(day, time(), tzinfo=UTC)
