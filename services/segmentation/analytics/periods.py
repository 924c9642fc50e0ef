"""Analytics periods: the range asked for, checked, and the UTC calendar periods it is cut into.

A period is a UTC day, an ISO week (from Monday) or a calendar month. In the database every timestamp
is turned into the integer *index* of its period (days since 1970-01-01, weeks since the Monday before
it, or year × 12 + month − 1), the same way on SQLite and PostgreSQL: consecutive periods have
consecutive indexes, so "bought in the previous period too" is `prev = idx - 1` in SQL.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum

from shared.errors import InvalidInput

DEFAULT_SPAN = timedelta(days=365)
MAX_SPAN = timedelta(days=3 * 365 + 1)  # three years (one of them may be a leap year)
EPOCH = date(1970, 1, 1)  # a Thursday: the Monday-based week index is (day + 3) // 7


class Interval(StrEnum):
    DAY = "day"
    WEEK = "week"
    MONTH = "month"


@dataclass(frozen=True, slots=True)
class Range:
    since: datetime  # inclusive, UTC
    until: datetime  # exclusive, UTC


def resolve_range(since: datetime | None, until: datetime | None, *, now: datetime) -> Range:
    """Defaults (until now, since a year before `until`), checked: both timezone-aware, `since` before
    `until`, at most three years apart. Errors name the query field."""
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
        raise InvalidInput("query.since", "the range covers at most three years: narrow since/until")
    return Range(start, end)


def index_of(moment: datetime | date, interval: Interval) -> int:
    """The period index of a UTC moment (or day) — what `queries.period_index` computes in SQL."""
    day = moment.astimezone(UTC).date() if isinstance(moment, datetime) else moment
    if interval is Interval.MONTH:
        return day.year * 12 + day.month - 1
    days = (day - EPOCH).days
    return (days + 3) // 7 if interval is Interval.WEEK else days


def start_of(index: int, interval: Interval) -> date:
    """The first day of the period with this index."""
    if interval is Interval.MONTH:
        return date(index // 12, index % 12 + 1, 1)
    if interval is Interval.WEEK:
        return EPOCH + timedelta(days=index * 7 - 3)
    return EPOCH + timedelta(days=index)


def midnight(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=UTC)


def indexes(window: Range, interval: Interval) -> list[int]:
    """Every period the range touches, oldest first."""
    first = index_of(window.since, interval)
    last = index_of(window.until - timedelta(microseconds=1), interval)
    return list(range(first, last + 1))
